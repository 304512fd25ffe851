"""Email providers' bounce and complaint webhooks: each module checks that a call is genuine
(a signature or credentials), then reads its notifications into the same `Notice`s a bounce
message gives, so one service (`leadsvc.deliverability.record`) acts on all of them.

A call that is unsigned or without credentials is refused with 401, one wrongly signed, too
old or for a topic that is not ours with 403; nothing is read from a refused call. A call
that is genuine but cannot be read is a 400.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from leadsvc.deliverability.parse import Notice

#: A signed call older than this (or this far ahead of our clock) is refused as stale.
MAX_AGE_SECONDS = 600


class Refused(Exception):
    """The call is not genuine (or not ours): `status` 401 or 403, `message` in plain words."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


class Unreadable(ValueError):
    """A genuine call whose body is not what the provider documents (a 400)."""


@dataclass(frozen=True)
class Call:
    """What a provider module needs of an HTTP request."""

    body: bytes
    headers: Mapping[str, str]
    #: HTTP basic credentials, if the request carried any.
    username: str | None = None
    password: str | None = None


@dataclass(frozen=True)
class Delivery:
    """One notification in a call: the provider's id for it, a digest of what it says, and
    the bounces and complaints it reports (none for other events)."""

    delivery_id: str
    digest: str
    notices: tuple[Notice, ...] = ()


@dataclass(frozen=True)
class Reading:
    """A genuine call read: its notifications, and for an SNS subscription confirmation the
    URL to visit to confirm it."""

    deliveries: tuple[Delivery, ...] = ()
    subscribe_url: str | None = None


def digest_of(value) -> str:
    """SHA-256 (hex) of a JSON value, keys sorted, or of bytes or text as they are."""
    if isinstance(value, bytes):
        data = value
    elif isinstance(value, str):
        data = value.encode()
    else:
        data = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(data).hexdigest()


def check_fresh(moment: datetime, now: datetime | None = None) -> None:
    """Refuse (403) a signed moment more than MAX_AGE_SECONDS from now, either way."""
    now = now or datetime.now(UTC)
    if abs((now - moment).total_seconds()) > MAX_AGE_SECONDS:
        raise Refused(403, "The notification is too old (or dated in the future).")


def load_json(body: bytes):
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise Unreadable("the body is not JSON") from None


def text(value, limit: int = 300) -> str | None:
    """A provider's string field, or None; at most `limit` characters."""
    return str(value)[:limit] if isinstance(value, str | int) and str(value) else None
