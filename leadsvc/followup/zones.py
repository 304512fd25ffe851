"""A dealer's time zone: its own setting, else derived from its state and longitude.

Most states keep one IANA zone; the few split between two are divided at the longitude where
their counties change zone (close enough for a dealer's street address, and a dealer on the wrong
side of a county line sets `time_zone` itself).
"""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

EASTERN, CENTRAL = "America/New_York", "America/Chicago"
MOUNTAIN, PACIFIC = "America/Denver", "America/Los_Angeles"
STATE_ZONES = {
    **dict.fromkeys("CT DC DE GA MA MD ME NC NH NJ NY OH PA RI SC VA VT WV".split(), EASTERN),
    "MI": "America/Detroit",
    **dict.fromkeys("AL AR IA IL LA MN MO MS OK WI".split(), CENTRAL),
    **dict.fromkeys("CO MT NM UT WY".split(), MOUNTAIN),
    **dict.fromkeys("CA NV WA".split(), PACIFIC),
    "AZ": "America/Phoenix",
    "AK": "America/Anchorage",
    "HI": "Pacific/Honolulu",
    "PR": "America/Puerto_Rico",
    "VI": "America/St_Thomas",
    "GU": "Pacific/Guam",
    "AS": "Pacific/Pago_Pago",
    "MP": "Pacific/Saipan",
}
#: States split between two zones: (longitude of the line, zone west of it, zone east of it).
SPLIT_STATES = {
    "FL": (-85.0, CENTRAL, EASTERN),
    "IN": (-86.8, CENTRAL, "America/Indiana/Indianapolis"),
    "KY": (-86.0, CENTRAL, "America/Kentucky/Louisville"),
    "TN": (-85.5, CENTRAL, EASTERN),
    "TX": (-104.9, MOUNTAIN, CENTRAL),
    "KS": (-101.5, MOUNTAIN, CENTRAL),
    "NE": (-101.0, MOUNTAIN, CENTRAL),
    "SD": (-100.5, MOUNTAIN, CENTRAL),
    "ND": (-101.0, MOUNTAIN, CENTRAL),
    "ID": (-116.3, PACIFIC, "America/Boise"),
    "OR": (-117.5, PACIFIC, "America/Boise"),
}


def derived_zone(state: str, longitude: float | None) -> str:
    """The IANA zone name for a place in `state` at `longitude` (Eastern when unknown)."""
    state = state.upper()
    if state in SPLIT_STATES:
        line, west, east = SPLIT_STATES[state]
        return west if longitude is not None and longitude < line else east
    return STATE_ZONES.get(state, EASTERN)


def checked_zone(name: str) -> str:
    """`name` if it is an IANA time zone this machine knows; ValueError in plain words if not."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"time zone {name!r} is not an IANA zone such as America/Chicago"
        ) from None
    return name


def dealer_zone(dealer) -> ZoneInfo:
    """The dealer's zone: its `time_zone`, else the one its state and longitude give."""
    return ZoneInfo(dealer.time_zone or derived_zone(dealer.state, dealer.longitude))
