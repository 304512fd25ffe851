"""One row of the dealer CSV checked and turned into a dealer's column values (the same checks
for the CSV import, the admin API and the console)."""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from leadsvc.dealers.opening_hours import parse_opening_hours
from leadsvc.geo.directory import parse_zip
from leadsvc.geo.source import STATE_NAMES
from leadsvc.input_bounds import WHITESPACE
from leadsvc.leads.email_address import EmailChecker, InvalidEmail
from leadsvc.webhook_targets import Network, RefusedTarget, check_webhook_url

_PHONE = re.compile(r"^\+?[0-9 ().-]{7,31}$")
_WEBHOOK_URL = re.compile(r"^https?://[^\s/$.?#][^\s]*$")

# The shapes these checks accept, as OpenAPI patterns (ECMA-262; Python's `re` reads them alike).
#: A dealer code in either case (codes are kept in upper case).
CODE_SHAPE = r"^[A-Za-z0-9][A-Za-z0-9_-]{1,15}$"
_CODE = re.compile(CODE_SHAPE)
#: A phone number: the characters `_PHONE` allows, with at least 10 digits (and, narrower than
#: the check, at most two separators before each of the first ten: a pattern that leaves
#: lengths open costs a generator seconds to fit under maxLength).
PHONE_SHAPE = r"^\+?(?:[ ().-]{0,2}[0-9]){10}[0-9 ().-]{0,8}$"
#: An http(s) URL without spaces or control characters, or nothing (no webhook).
WEBHOOK_URL_SHAPE = (
    rf"^(?:https?://[^{WHITESPACE}\x00-\x1f\x7f/$.?#][^{WHITESPACE}\x00-\x1f\x7f]*)?$"
)
_DAY = "(?:mon|tue|wed|thu|fri|sat|sun)"
_DAYS = f"{_DAY}(?:-{_DAY})?(?: *, *{_DAY}(?:-{_DAY})?)*"
_TIME = "(?:[01]?[0-9]|2[0-3]):[0-5][0-9]|24:00"
_GROUP = f"{_DAYS} +(?:{_TIME})-(?:{_TIME})"
#: `leadsvc.dealers.opening_hours` groups (in lower case) separated by `;`, or nothing.
OPENING_HOURS_SHAPE = f"^(?: *{_GROUP} *(?:; *{_GROUP} *)*)?$"
#: The IANA zones this machine knows.
TIME_ZONES = sorted(available_timezones())


def _coordinate(raw: str, low: float, high: float, name: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} {raw!r} is not a number") from None
    if not low <= value <= high:
        raise ValueError(f"{name} {raw} is out of range")
    return value


def _dealer_code(row: dict[str, str]) -> str:
    """The row's dealer code in upper case, or ValueError if it is missing or malformed."""
    code = row.get("code", "").upper()
    if not code:
        raise ValueError("missing code")
    if not _CODE.match(code):
        raise ValueError(f"code {code!r} must be 2-16 letters, digits, - or _")
    return code


def _check_name_and_address(row: dict[str, str]) -> None:
    """Raise ValueError if the name, street or city is missing or too long."""
    for name, limit in (("name", 120), ("street", 200), ("city", 100)):
        if not row.get(name):
            raise ValueError(f"missing {name}")
        if len(row[name]) > limit:
            raise ValueError(f"{name} is longer than {limit} characters")


def _dealer_state(row: dict[str, str]) -> str:
    """The row's US state code in upper case, or ValueError if it is not one."""
    state = row.get("state", "").upper()
    if state not in STATE_NAMES:
        raise ValueError(f"state {row.get('state')!r} is not a US state code")
    return state


def _dealer_zip5(row: dict[str, str], centres: dict[str, tuple]) -> str:
    """The row's five-digit ZIP, or ValueError if it is not a known US ZIP code."""
    zip_input = parse_zip(row.get("zip", ""))
    if zip_input is None or zip_input.zip5 not in centres:
        raise ValueError(f"ZIP {row.get('zip')!r} is not a US ZIP code")
    return zip_input.zip5


def _dealer_phone(row: dict[str, str]) -> str:
    """The row's phone number, or ValueError if it does not look like one."""
    phone = row.get("phone", "")
    if not _PHONE.match(phone) or sum(ch.isdigit() for ch in phone) < 10:
        raise ValueError(f"phone {phone!r} is not a phone number")
    return phone


def _dealer_lead_email(row: dict[str, str], emails: EmailChecker) -> str:
    """The row's normalized lead_email, or ValueError if it is not a valid address."""
    try:
        return emails.check(row.get("lead_email", "")).normalized
    except InvalidEmail:
        raise ValueError(
            f"lead_email {row.get('lead_email')!r} is not a valid email address"
        ) from None


def _dealer_webhook(
    row: dict[str, str], allowed: tuple[Network, ...]
) -> tuple[str | None, str | None]:
    """The row's (webhook_url, webhook_secret), both or neither, or ValueError. The URL may not
    point at this machine, a private or link-local network or a cloud metadata service, unless
    `allowed` (WEBHOOK_ALLOWED_NETWORKS) lets it."""
    webhook_url = row.get("webhook_url") or None
    webhook_secret = row.get("webhook_secret") or None
    if webhook_url:
        if not _WEBHOOK_URL.match(webhook_url) or len(webhook_url) > 2048:
            raise ValueError(f"webhook_url {webhook_url!r} is not an http(s) URL")
        try:
            check_webhook_url(webhook_url, allowed)
        except RefusedTarget as error:
            raise ValueError(
                f"webhook_url {webhook_url!r} is not allowed: {error} (webhooks go to public "
                "addresses, or to networks listed in WEBHOOK_ALLOWED_NETWORKS)"
            ) from None
        if not webhook_secret or len(webhook_secret) < 16:
            raise ValueError(
                "webhook_secret of at least 16 characters is required with webhook_url"
            )
    elif webhook_secret:
        raise ValueError("webhook_secret given without webhook_url")
    return webhook_url, webhook_secret


def _dealer_position(
    row: dict[str, str], zip5: str, centres: dict[str, tuple]
) -> tuple[float, float, str]:
    """(latitude, longitude, coordinates_from): the row's own, else its ZIP's centre."""
    lat_raw, lon_raw = row.get("latitude", ""), row.get("longitude", "")
    if bool(lat_raw) != bool(lon_raw):
        raise ValueError("give both latitude and longitude, or neither")
    if lat_raw:
        latitude = _coordinate(lat_raw, -90, 90, "latitude")
        longitude = _coordinate(lon_raw, -180, 180, "longitude")
        return latitude, longitude, "explicit"
    latitude, longitude = centres[zip5]
    if latitude is None:
        raise ValueError(f"ZIP {zip5} has no map position: give latitude and longitude")
    return latitude, longitude, "zip"


def _follow_up_columns(row: dict[str, str]) -> dict[str, Any]:
    """response_hours, opening_hours and time_zone (each None when left empty), or ValueError."""
    hours_raw = str(row.get("response_hours") or "").strip()
    response_hours = None
    if hours_raw:
        response_hours = _coordinate(hours_raw, 0.01, 8760, "response_hours")
    opening_hours = str(row.get("opening_hours") or "").strip() or None
    if opening_hours is not None:
        if len(opening_hours) > 200:
            raise ValueError("opening_hours is longer than 200 characters")
        parse_opening_hours(opening_hours)
    time_zone = str(row.get("time_zone") or "").strip() or None
    if time_zone is not None:
        try:
            ZoneInfo(time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"time_zone {time_zone!r} is not an IANA zone such as America/Chicago"
            ) from None
    return {
        "response_hours": response_hours,
        "opening_hours": opening_hours,
        "time_zone": time_zone,
    }


def validate_dealer(
    row: dict[str, str],
    centres: dict[str, tuple],
    emails: EmailChecker,
    *,
    webhook_networks: tuple[Network, ...] = (),
) -> dict[str, Any]:
    """The dealer's column values, or ValueError with the reason. `webhook_networks`: the
    WEBHOOK_ALLOWED_NETWORKS setting (private ranges a webhook may reach all the same)."""
    if "__error__" in row:
        raise ValueError(row["__error__"])
    code = _dealer_code(row)
    _check_name_and_address(row)
    state = _dealer_state(row)
    zip5 = _dealer_zip5(row, centres)
    phone = _dealer_phone(row)
    lead_email = _dealer_lead_email(row, emails)
    webhook_url, webhook_secret = _dealer_webhook(row, webhook_networks)
    latitude, longitude, coordinates_from = _dealer_position(row, zip5, centres)
    return {
        "code": code,
        "name": row["name"],
        "street": row["street"],
        "city": row["city"],
        "state": state,
        "zip5": zip5,
        "phone": phone,
        "lead_email": lead_email,
        "webhook_url": webhook_url,
        "webhook_secret": webhook_secret,
        "latitude": latitude,
        "longitude": longitude,
        "coordinates_from": coordinates_from,
        **_follow_up_columns(row),
    }
