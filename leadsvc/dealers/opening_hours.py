"""Dealers' opening hours as the directory writes them: `mon-fri 09:00-18:00; sat 09:00-17:00`.

Days as ranges (`tue-fri`, `fri-sun`) or lists (`mon,wed`), one time range per group, `24:00`
for midnight at the end of a day; several groups may name one day (a split day). The follow-up
(`leadsvc.followup.hours`) counts response targets in these hours.
"""

from __future__ import annotations

import re

DEFAULT_OPENING_HOURS = "mon-fri 09:00-18:00; sat 09:00-17:00"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
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
