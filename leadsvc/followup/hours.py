"""Business hours: opening hours per weekday in a dealer's time zone, less holidays.

A `Calendar` answers two questions in UTC: what moment lies `seconds` of open time after a
start (`add`), and how much open time lies between two moments (`between`). Opening hours are
written `mon-fri 09:00-18:00; sat 09:00-17:00` (days as ranges or lists, one time range per
group, `24:00` for midnight at the end of a day). Each open span is built from the local date and
wall-clock times through `zoneinfo`, so a daylight-saving change shortens or lengthens that day's
span by the hour the clocks moved, as a dealer's staff live it.
"""

from __future__ import annotations

from collections.abc import Container, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from leadsvc.dealers.opening_hours import WeekHours

#: A calendar with no open day would never reach a deadline: looking further is an error.
MAX_DAYS_AHEAD = 3 * 366


@dataclass(frozen=True)
class Calendar:
    """Open time for one dealer. `always_open` counts every hour (BUSINESS_HOURS off)."""

    zone: ZoneInfo
    week: WeekHours
    holidays: Container[date] = frozenset()
    always_open: bool = False

    def spans(self, start: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Open spans (UTC start, UTC end) that end after `start`, in order, clipped to it."""
        day = start.astimezone(self.zone).date() - timedelta(days=1)
        for _ in range(MAX_DAYS_AHEAD):
            if day not in self.holidays:
                midnight = datetime(day.year, day.month, day.day, tzinfo=self.zone)
                for opens, closes in self.week.get(day.weekday(), ()):
                    begin = (midnight + timedelta(minutes=opens)).astimezone(UTC)
                    end = (midnight + timedelta(minutes=closes)).astimezone(UTC)
                    if end > start:
                        yield max(begin, start), end
            day += timedelta(days=1)
        raise ValueError(f"no open hour within {MAX_DAYS_AHEAD} days")

    def add(self, start: datetime, seconds: float) -> datetime:
        """The moment `seconds` of open time after `start`."""
        if self.always_open:
            return start + timedelta(seconds=seconds)
        left = timedelta(seconds=seconds)
        for begin, end in self.spans(start):
            if end - begin >= left:
                return begin + left
            left -= end - begin
        raise AssertionError("unreachable: spans() ends by raising")

    def between(self, start: datetime, end: datetime) -> float:
        """Seconds of open time from `start` to `end` (0 when `end` is not later)."""
        if end <= start:
            return 0.0
        if self.always_open:
            return (end - start).total_seconds()
        total = 0.0
        for begin, close in self.spans(start):
            if begin >= end:
                break
            total += (min(close, end) - begin).total_seconds()
        return total


class Holidays(Container[date]):
    """US federal holidays (the `holidays` package) plus the dates an admin added."""

    def __init__(self, extra: Container[date] = frozenset()):
        import holidays

        self._us = holidays.country_holidays("US")
        self._extra = extra

    def __contains__(self, day: object) -> bool:
        return day in self._extra or day in self._us
