"""Consent texts and the append-only consent record, as plain functions over a session."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import sqlalchemy as sa
from flask import current_app, has_app_context
from sqlalchemy.orm import Session

from leadsvc.consent.models import ConsentEvent, ConsentText
from leadsvc.db import as_utc, utcnow
from leadsvc.request_context import ConsentContext


def active_text(session: Session) -> ConsentText:
    """The consent notice the form shows now."""
    text = session.scalar(sa.select(ConsentText).where(ConsentText.active))
    if text is None:
        raise LookupError("no active consent text: run `leadsvc db upgrade`")
    return text


class _TextCache:
    """Per app: consent text versions known to exist (versions never change once published),
    and the active version, re-read at most every `ACTIVE_TTL_SECONDS` (a publish reaches every
    process within that time; a form that posts the version it showed is never affected)."""

    ACTIVE_TTL_SECONDS = 2.0

    def __init__(self) -> None:
        self.known: set[int] = set()
        self.active: tuple[int, float] | None = None


def _cache() -> _TextCache | None:
    if not has_app_context():
        return None
    return current_app.extensions.setdefault("leadsvc.consent_texts", _TextCache())


def text_version_exists(session: Session, version: int) -> bool:
    cache = _cache()
    if cache is not None and version in cache.known:
        return True
    exists = session.get(ConsentText, version) is not None
    if exists and cache is not None:
        cache.known.add(version)
    return exists


def active_text_version(session: Session) -> int:
    """The version the form shows now (cached for a moment per process)."""
    cache = _cache()
    now = time.monotonic()
    if cache is not None and cache.active and now - cache.active[1] < _TextCache.ACTIVE_TTL_SECONDS:
        return cache.active[0]
    version = session.scalar(sa.select(ConsentText.version).where(ConsentText.active))
    if version is None:
        raise LookupError("no active consent text: run `leadsvc db upgrade`")
    if cache is not None:
        cache.active = (version, now)
    return version


_EVENT_COLUMNS = (
    "lead_id",
    "subject",
    "event_type",
    "text_version",
    "occurred_at",
    "ip",
    "user_agent",
    "source_url",
    "request_id",
    "digest",
)


def consent_event(
    *,
    lead_id: int | None,
    subject: str,
    event_type: str,
    text_version: int,
    context: ConsentContext,
) -> tuple[sa.Insert, dict]:
    """The INSERT that appends one consent event (never updated afterwards: triggers enforce
    it), returning its id, and its values with the digest; for `record_consent`, or to send in
    one statement with other writes of the same transaction."""
    from leadsvc.consent.chain import event_digest, subject_key

    values = {
        "lead_id": lead_id,
        "subject": subject,
        "event_type": event_type,
        "text_version": text_version,
        "occurred_at": utcnow(),
        "ip": context.ip,
        "user_agent": context.user_agent,
        "source_url": context.source_url,
        "request_id": context.request_id,
    }
    values["digest"] = event_digest(**values, key=subject_key())
    return _INSERT_EVENT, values


_EVENTS = ConsentEvent.__table__
#: Built once, bound per execution (building the statement per event cost more than sending it).
_INSERT_EVENT = (
    sa.insert(_EVENTS)
    .values({name: sa.bindparam(name, type_=_EVENTS.c[name].type) for name in _EVENT_COLUMNS})
    .returning(_EVENTS.c.id)
)


def record_consent(session: Session, **event) -> int:
    """Append one consent event (`consent_event`'s fields) in the caller's transaction; its id."""
    statement, values = consent_event(**event)
    return session.connection().execute(statement, values).scalar_one()


def list_texts(session: Session) -> list[ConsentText]:
    return list(session.scalars(sa.select(ConsentText).order_by(ConsentText.version)))


def publish_text(session: Session, text: str) -> ConsentText:
    """Add a new consent text version and make it the active one (the form shows it at once)."""
    import hashlib

    text = text.strip()
    if not text:
        raise ValueError("the consent text is empty")
    if len(text) > 10_000:
        raise ValueError("the consent text is longer than 10,000 characters")
    current = session.scalar(sa.select(ConsentText).where(ConsentText.active).with_for_update())
    if current is not None and current.text == text:
        raise ValueError(f"this text is already the active version {current.version}")
    version = (session.scalar(sa.select(sa.func.max(ConsentText.version))) or 0) + 1
    if current is not None:
        current.active = False
        session.flush()
    published = ConsentText(
        version=version,
        text=text,
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        active=True,
        published_at=utcnow(),
    )
    session.add(published)
    session.commit()
    cache = _cache()
    if cache is not None:
        cache.active = None  # this process sees the new version at once
    return published


def parse_when(value: str) -> datetime:
    """An ISO 8601 date or date and time as the export's bounds take it: a plain date is its
    midnight, and a time without an offset is UTC; the result is in UTC. ValueError for
    anything else."""
    parsed = datetime.fromisoformat(value.strip())
    return as_utc(parsed) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
