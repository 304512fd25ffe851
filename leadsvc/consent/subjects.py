"""One person's data: everything held about them (a data access request), and erasure.

Erasure removes the person's personal fields from the lead and every outbox and attempt record,
replaces their address in the consent events by `erased:<keyed hash>` (the events and the hash
chain stay, and still verify), remembers the hash so a later signup from the address counts as
new consent, stops anything still queued for them, appends an `erased` event, and queues a
deletion notice to every dealer that received the lead. Doing it twice changes nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from flask import current_app, has_app_context
from sqlalchemy.orm import Session

from leadsvc.consent.chain import ERASED_PREFIX, subject_hash, subject_key
from leadsvc.consent.models import ConsentEvent, ConsentText, ErasedSubject
from leadsvc.consent.service import record_consent
from leadsvc.db import utcnow
from leadsvc.dealers.models import Dealer
from leadsvc.leads.email_address import EmailChecker, InvalidEmail
from leadsvc.leads.models import Lead
from leadsvc.outbox.messages import (
    DEALER_ERASURE_EMAIL,
    DEALER_ERASURE_WEBHOOK,
    DEALER_KINDS,
    PERSON_KINDS,
    add_message,
    skip_open_messages,
)
from leadsvc.outbox.models import OutboxAttempt, OutboxMessage
from leadsvc.request_context import ConsentContext

ERASED = "erased"
#: `app.extensions` key: name -> function(session, lead id) of the sections packages above this
#: one add to a subject lookup (leadsvc.deliverability's bounce history, as "bounces").
SUBJECT_SECTIONS_KEY = "leadsvc.subject_sections"


def subject_email_key(email: str) -> str:
    """The identity of the person an address names (as signups key leads)."""
    try:
        return EmailChecker().check(email).key
    except InvalidEmail:
        return email.strip().lower()


def _events_of(session: Session, email_key: str, hashed: str, lead_id: int | None):
    conditions = [
        sa.func.lower(ConsentEvent.subject) == email_key,
        ConsentEvent.subject == ERASED_PREFIX + hashed,
    ]
    if lead_id is not None:
        conditions.append(ConsentEvent.lead_id == lead_id)
    return session.scalars(
        sa.select(ConsentEvent).where(sa.or_(*conditions)).order_by(ConsentEvent.id)
    ).all()


def lookup_subject(session: Session, email: str) -> dict[str, Any]:
    """Everything held about the person with this address: lead, consent, emails, dealers."""
    email_key = subject_email_key(email)
    hashed = subject_hash(email_key, subject_key())
    lead = session.scalar(sa.select(Lead).where(Lead.email_key == email_key))
    erased = session.get(ErasedSubject, hashed)
    events = _events_of(session, email_key, hashed, lead.id if lead else None)
    messages = []
    if lead is not None:
        rows = session.execute(
            sa.select(OutboxMessage, Dealer.code)
            .outerjoin(Dealer, Dealer.id == OutboxMessage.dealer_id)
            .where(OutboxMessage.lead_id == lead.id)
            .order_by(OutboxMessage.id)
        ).all()
        attempts = session.scalars(
            sa.select(OutboxAttempt)
            .where(OutboxAttempt.outbox_id.in_([row.id for row, _ in rows]))
            .order_by(OutboxAttempt.id)
        ).all()
        for row, dealer_code in rows:
            messages.append(
                {
                    "id": row.id,
                    "kind": row.kind,
                    "dealer_code": dealer_code,
                    "status": row.status,
                    "created_at": row.created_at,
                    "sent_at": row.sent_at,
                    "attempts": [
                        {"at": a.started_at, "outcome": a.outcome, "error": a.error}
                        for a in attempts
                        if a.outbox_id == row.id
                    ],
                }
            )
    return {
        "email": email_key,
        "found": lead is not None or bool(events),
        **_sections(session, lead),
        "erased_at": erased.erased_at if erased else None,
        "lead": _lead_fields(session, lead),
        "consent_events": [
            {
                "id": e.id,
                "type": e.event_type,
                "occurred_at": e.occurred_at,
                "text_version": e.text_version,
                "ip": e.ip,
                "user_agent": e.user_agent,
                "source_url": e.source_url,
                "request_id": e.request_id,
            }
            for e in events
        ],
        "emails_sent": [m for m in messages if m["kind"] in PERSON_KINDS],
        "dealer_notifications": [m for m in messages if m["kind"] in DEALER_KINDS],
    }


def _sections(session: Session, lead: Lead | None) -> dict[str, Any]:
    sections = current_app.extensions.get(SUBJECT_SECTIONS_KEY, {}) if has_app_context() else {}
    return {name: read(session, lead.id) if lead else [] for name, read in sections.items()}


def _lead_fields(session: Session, lead: Lead | None) -> dict[str, Any] | None:
    if lead is None:
        return None
    dealer = session.get(Dealer, lead.dealer_id) if lead.dealer_id else None
    return {
        "id": lead.id,
        "email": lead.email,
        "email_as_typed": lead.email_as_typed,
        "first_name": lead.first_name,
        "last_name": lead.last_name,
        "zip": lead.zip5,
        "zip4": lead.zip4,
        "source": lead.source,
        "utm": lead.utm,
        "interests": lead.interests,
        "consent_status": lead.consent_status,
        "newsletter": lead.newsletter,
        "dealer_contact": lead.dealer_contact,
        "bounced_at": lead.bounced_at,
        "consent_text_version": lead.consent_text_version,
        "signup_count": lead.signup_count,
        "created_at": lead.created_at,
        "updated_at": lead.updated_at,
        "dealer_code": dealer.code if dealer else None,
        "distance_km": lead.distance_km,
        "routing_reason": lead.routing_reason,
        "acknowledged_at": lead.acknowledged_at,
    }


@dataclass(frozen=True)
class ErasureReport:
    subject_hash: str
    already_erased: bool
    lead_id: int | None
    events_rewritten: int
    dealers_notified: list[str]


def erase_subject(session: Session, email: str, context: ConsentContext) -> ErasureReport:
    """Erase the person with this address (idempotent); commits."""
    email_key = subject_email_key(email)
    hashed = subject_hash(email_key, subject_key())
    marker = ERASED_PREFIX + hashed
    lead = session.scalar(sa.select(Lead).where(Lead.email_key == email_key).with_for_update())
    known = session.get(ErasedSubject, hashed)
    rewritten = session.execute(
        sa.update(ConsentEvent)
        .where(sa.func.lower(ConsentEvent.subject) == email_key)
        .values(subject=marker)
        .execution_options(synchronize_session=False)
    ).rowcount
    if lead is None and known is not None and not rewritten:
        session.commit()
        return ErasureReport(hashed, True, None, 0, [])
    if known is None:
        session.add(ErasedSubject(subject_hash=hashed, erased_at=utcnow()))
    notified: list[str] = []
    if lead is not None:
        notified = _erase_lead(session, lead, marker)
        text_version = lead.consent_text_version
    else:
        text_version = session.scalar(sa.select(ConsentText.version).where(ConsentText.active))
    record_consent(
        session,
        lead_id=lead.id if lead else None,
        subject=marker,
        event_type=ERASED,
        text_version=text_version,
        context=context,
    )
    session.commit()
    return ErasureReport(hashed, known is not None, lead.id if lead else None, rewritten, notified)


def _erase_lead(session: Session, lead: Lead, marker: str) -> list[str]:
    """Blank the lead's personal fields and its messages; queue dealers' deletion notices."""

    skip_open_messages(session, lead.id, "the person was erased")
    message_ids = sa.select(OutboxMessage.id).where(OutboxMessage.lead_id == lead.id)
    session.execute(
        sa.update(OutboxAttempt)
        .where(OutboxAttempt.outbox_id.in_(message_ids))
        .where(OutboxAttempt.error.is_not(None))
        .values(error="[erased]")
        .execution_options(synchronize_session=False)
    )
    session.execute(
        sa.update(OutboxMessage)
        .where(OutboxMessage.id.in_(message_ids))
        .where(OutboxMessage.last_error.is_not(None))
        .values(last_error="[erased]")
        .execution_options(synchronize_session=False)
    )
    dealers = session.execute(
        sa.select(Dealer.id, Dealer.code)
        .join(OutboxMessage, OutboxMessage.dealer_id == Dealer.id)
        .where(
            OutboxMessage.lead_id == lead.id,
            OutboxMessage.kind.in_(DEALER_KINDS),
            OutboxMessage.status.in_(("sent", "handed_off", "unknown")),
        )
        .distinct()
    ).all()
    lead.email = lead.email_key = lead.email_as_typed = marker
    lead.first_name = lead.last_name = ""
    lead.zip4 = lead.source = lead.utm = lead.interests = None
    lead.consent_status = ERASED
    lead.updated_at = utcnow()
    session.flush()
    for dealer_id, _ in dealers:
        notify_dealer_of_erasure(session, lead.id, dealer_id)
    return sorted(code for _, code in dealers)


def notify_dealer_of_erasure(session: Session, lead_id: int, dealer_id: int) -> list:
    """A deletion notice (email, and webhook if the dealer has one) for an erased person's lead."""
    rows = [add_message(session, DEALER_ERASURE_EMAIL, lead_id, dealer_id)]
    webhook_url = session.scalar(sa.select(Dealer.webhook_url).where(Dealer.id == dealer_id))
    if webhook_url:
        rows.append(add_message(session, DEALER_ERASURE_WEBHOOK, lead_id, dealer_id))
    return rows
