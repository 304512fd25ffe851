"""Business hours: opening hours per weekday in a dealer's time zone, less holidays.

A `Calendar` answers two questions in UTC: what moment lies `seconds` of open time after a
start (`add`), and how much open time lies between two moments (`between`). Opening hours are
written `mon-fri 09:00-18:00; sat 09:00-17:00` (days as ranges or lists, one time range per
group, `24:00` for midnight at the end of a day). Each open span is built from the local date and
wall-clock times through `zoneinfo`, so a daylight-saving change shortens or lengthens that day's
span by the hour the clocks moved, as a dealer's staff live it.
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

DEFAULT_OPENING_HOURS = "mon-fri 09:00-18:00; sat 09:00-17:00"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: A calendar with no open day would never reach a deadline: looking further is an error.
MAX_DAYS_AHEAD = 3 * 366
_GROUP = re.compile(r"^(?P<days>[a-z,\- ]+?)\s+(?P<open>\d{1,2}:\d{2})-(?P<close>\d{1,2}:\d{2})$")

#: Open ranges per weekday (Monday 0), as (minutes after midnight at opening, at closing).
WeekHours = dict[int, tuple[tuple[int, int], ...]]


def _minutes(text: str) -> int:
    hours, minutes = (int(part) for part in text.split(":"))
    if not (0 <= hours <= 24 and 0 <= minutes < 60) or (hours == 24 and minutes):
        raise ValueError(f"{text} is not a time of day")
    return hours * 60 + minutes


def _days(text: str) -> list[int]:
    chosen: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise ValueError(f"{part!r} is not a day or range of days (mon, tue-fri, ...)")
        start, end = DAYS.index(first), DAYS.index(last or first)
        chosen.extend(day % 7 for day in range(start, end + 1 if end >= start else end + 8))
    return chosen


def parse_opening_hours(text: str) -> WeekHours:
    """`mon-fri 09:00-18:00; sat 09:00-17:00` as open ranges per weekday; ValueError if not."""
    week: dict[int, list[tuple[int, int]]] = {}
    for group in (g.strip() for g in text.lower().replace("\n", ";").split(";")):
        if not group:
            continue
        match = _GROUP.match(group)
        if match is None:
            raise ValueError(f"opening hours {group!r} should look like 'mon-fri 09:00-18:00'")
        opens, closes = _minutes(match["open"]), _minutes(match["close"])
        if closes <= opens:
            raise ValueError(f"opening hours {group!r} close before they open")
        for day in _days(match["days"]):
            week.setdefault(day, []).append((opens, closes))
    if not week:
        raise ValueError("opening hours name no open day")
    return {day: tuple(sorted(ranges)) for day, ranges in week.items()}


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
