"""Business-hours arithmetic: weekends, holidays, time zones, daylight-saving changes."""

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from leadsvc.dealers.opening_hours import DEFAULT_OPENING_HOURS, parse_opening_hours
from leadsvc.followup.hours import Calendar, Holidays
from leadsvc.followup.zones import checked_zone, derived_zone

NEW_YORK, CHICAGO = ZoneInfo("America/New_York"), ZoneInfo("America/Chicago")
WEEK = parse_opening_hours(DEFAULT_OPENING_HOURS)


def local(zone, *parts) -> datetime:
    return datetime(*parts, tzinfo=zone).astimezone(UTC)


def test_a_target_runs_across_the_weekend_in_opening_hours_only():
    calendar = Calendar(NEW_YORK, WEEK, Holidays())
    friday_4pm = local(NEW_YORK, 2026, 3, 13, 16, 0)
    # Friday 16-18 (2 h), Saturday 9-17 (8 h), Sunday closed, Monday 9-18 (9 h), Tuesday 9-14.
    assert calendar.add(friday_4pm, 24 * 3600) == local(NEW_YORK, 2026, 3, 17, 14, 0)
    assert calendar.between(friday_4pm, local(NEW_YORK, 2026, 3, 17, 14, 0)) == 24 * 3600
    # Sunday counts nothing at all.
    sunday = local(NEW_YORK, 2026, 3, 15, 8, 0), local(NEW_YORK, 2026, 3, 15, 20, 0)
    assert calendar.between(*sunday) == 0


def test_a_start_outside_opening_hours_waits_for_the_next_opening():
    calendar = Calendar(NEW_YORK, WEEK, Holidays())
    assert calendar.add(local(NEW_YORK, 2026, 3, 2, 22, 30), 3600) == local(
        NEW_YORK, 2026, 3, 3, 10, 0
    )


def test_us_holidays_and_an_admins_dates_are_closed():
    calendar = Calendar(NEW_YORK, WEEK, Holidays())
    # Thursday 2026-11-26 is Thanksgiving: Wednesday 17:00 + 2 h ends on Friday at 10:00.
    assert calendar.add(local(NEW_YORK, 2026, 11, 25, 17, 0), 2 * 3600) == local(
        NEW_YORK, 2026, 11, 27, 10, 0
    )
    closed_friday = Calendar(NEW_YORK, WEEK, Holidays(frozenset({date(2026, 11, 27)})))
    assert closed_friday.add(local(NEW_YORK, 2026, 11, 25, 17, 0), 2 * 3600) == local(
        NEW_YORK, 2026, 11, 28, 10, 0
    )


def test_each_dealer_counts_in_its_own_time_zone():
    start = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)  # 09:00 in New York, 08:00 in Chicago
    new_york = Calendar(NEW_YORK, WEEK, Holidays())
    chicago = Calendar(CHICAGO, WEEK, Holidays())
    assert new_york.add(start, 3600) == datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    assert chicago.add(start, 3600) == datetime(2026, 3, 2, 16, 0, tzinfo=UTC)


def test_daylight_saving_changes_move_opening_hours_in_utc_and_shorten_the_day():
    every_day = parse_opening_hours("mon-sun 09:00-18:00")
    calendar = Calendar(NEW_YORK, every_day, Holidays())
    # Saturday 16:00 EST; clocks go forward on Sunday 2026-03-08. Sunday opens at 09:00 EDT.
    saturday = local(NEW_YORK, 2026, 3, 7, 16, 0)
    assert calendar.add(saturday, 5 * 3600) == datetime(2026, 3, 8, 16, 0, tzinfo=UTC)
    around_the_clock = Calendar(NEW_YORK, parse_opening_hours("mon-sun 00:00-24:00"), Holidays())
    sunday = local(NEW_YORK, 2026, 3, 8, 0, 0), local(NEW_YORK, 2026, 3, 9, 0, 0)
    assert around_the_clock.between(*sunday) == 23 * 3600
    autumn = local(NEW_YORK, 2026, 11, 1, 0, 0), local(NEW_YORK, 2026, 11, 2, 0, 0)
    assert around_the_clock.between(*autumn) == 25 * 3600


def test_business_hours_off_counts_every_hour():
    calendar = Calendar(NEW_YORK, {}, always_open=True)
    start = local(NEW_YORK, 2026, 3, 13, 16, 0)
    assert calendar.add(start, 1.5 * 3600) == local(NEW_YORK, 2026, 3, 13, 17, 30)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "no open day"),
        ("mon-fri 9-18", "should look like"),
        ("someday 09:00-18:00", "not a day"),
        ("mon 18:00-09:00", "close before they open"),
        ("mon 25:00-26:00", "not a time of day"),
    ],
)
def test_opening_hours_that_make_no_sense_are_refused_in_plain_words(text, problem):
    with pytest.raises(ValueError, match=problem):
        parse_opening_hours(text)


def test_opening_hours_accept_lists_ranges_and_split_days():
    week = parse_opening_hours("mon,wed 09:00-12:00; mon 13:00-17:00; fri-sun 10:00-16:00")
    assert week[0] == ((540, 720), (780, 1020))
    assert sorted(week) == [0, 2, 4, 5, 6]


def test_time_zones_come_from_state_and_longitude_unless_set():
    assert derived_zone("NY", -73.99) == "America/New_York"
    assert derived_zone("IL", -87.6) == "America/Chicago"
    assert derived_zone("TX", -106.4) == "America/Denver"  # El Paso
    assert derived_zone("TX", -97.7) == "America/Chicago"  # Austin
    assert derived_zone("AZ", -112.0) == "America/Phoenix"
    assert checked_zone("America/Boise") == "America/Boise"
    with pytest.raises(ValueError, match="not an IANA zone"):
        checked_zone("Mars/Olympus")
