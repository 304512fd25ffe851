"""Consent texts and the append-only consent record, as plain functions over a session."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from leadsvc.consent.models import ConsentEvent, ConsentText


@dataclass(frozen=True, slots=True)
class ConsentContext:
    """How consent was given: the request's client address, browser, page and request id."""

    ip: str | None
    user_agent: str | None
    source_url: str | None
    request_id: str | None


def active_text(session: Session) -> ConsentText:
    """The consent notice the form shows now."""
    text = session.scalar(sa.select(ConsentText).where(ConsentText.active))
    if text is None:
        raise LookupError("no active consent text: run `leadsvc db upgrade`")
    return text


def text_version_exists(session: Session, version: int) -> bool:
    return session.get(ConsentText, version) is not None


def record_consent(
    session: Session,
    *,
    lead_id: int,
    subject: str,
    event_type: str,
    text_version: int,
    context: ConsentContext,
) -> ConsentEvent:
    """Append one consent event; it is never updated afterwards (triggers enforce it)."""
    event = ConsentEvent(
        lead_id=lead_id,
        subject=subject,
        event_type=event_type,
        text_version=text_version,
        ip=context.ip,
        user_agent=context.user_agent,
        source_url=context.source_url,
        request_id=context.request_id,
    )
    session.add(event)
    return event
