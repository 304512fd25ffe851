"""What a bounce or a complaint does, once it is known which email it answers.

A hard bounce suppresses the address (the lead's `bounced_at`; nothing more is sent to it and
the dealer sees the lead as bounced); SOFT_BOUNCE_LIMIT soft bounces within SOFT_BOUNCE_DAYS do
the same; a complaint is a withdrawal exactly as an unsubscribe is, its consent event's method
(`source_url`) `complaint:<source>`. Each recipient of a notification is recorded once: the
same notification ingested again changes nothing more.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from leadsvc.db import utcnow
from leadsvc.deliverability.models import BounceEvent
from leadsvc.deliverability.parse import COMPLAINT, HARD, SOFT, Notice
from leadsvc.leads.models import Lead
from leadsvc.outbound.subscription import withdraw_lead
from leadsvc.outbound.tokens import InvalidToken, link_tokens
from leadsvc.outbox.messages import PERSON_KINDS, skip_open_messages
from leadsvc.outbox.models import OutboxMessage
from leadsvc.request_context import ConsentContext

RECORDED, DUPLICATE, UNMATCHED = "recorded", "duplicate", "unmatched"
SUPPRESSED_REASON = "suppressed: mail to the address bounced"
#: An outbox row in one of these went (or may have gone) out: a bounce can answer it.
SENT_STATUSES = ("sent", "handed_off", "unknown")


@dataclass(frozen=True)
class Target:
    """The email a notice answers: its outbox row (if known) and the lead, if it was a
    person's email (a dealer's lead email bouncing suppresses nobody)."""

    outbox_id: int | None
    lead_id: int | None


def notification_key(source: str, notice: Notice) -> str:
    recipient = (notice.recipient or "").strip().lower()
    text = "\n".join((source, notice.notification_id, recipient, notice.kind))
    return hashlib.sha256(text.encode()).hexdigest()


def find_target(
    session: Session, settings, notice: Notice, by_recipient: bool = False
) -> Target | None:
    """The outbox row by the VERP token, else by the quoted Message-ID (unguessable: see
    `leadsvc.outbound.messages.message_id`), else, when `by_recipient` (a provider that signed
    or authenticated its call names the recipient), by the address where that is unambiguous.
    None if none of these is ours: a notice about someone else's mail is not acted on."""
    row = None
    if notice.envelope_token:
        try:
            outbox_id = link_tokens(settings).verp_outbox_id(notice.envelope_token)
        except InvalidToken:
            if settings.bounce_domain:
                return None  # came back to an envelope address we never made: forged
            outbox_id = None
        if outbox_id is not None:
            row = session.get(OutboxMessage, outbox_id)
    if row is None and notice.original_message_id:
        row = session.scalars(
            sa.select(OutboxMessage).where(OutboxMessage.message_id == notice.original_message_id)
        ).first()
    if row is None and by_recipient and notice.recipient:
        row = _sent_to(session, notice.recipient)
    if row is None:
        return None
    person = row.kind in PERSON_KINDS and row.dealer_id is None
    return Target(row.id, row.lead_id if person else None)


def _sent_to(session: Session, recipient: str) -> OutboxMessage | None:
    """The last email sent to the person whose address `recipient` is: one lead at most has it
    (`email_key` is unique), and only if an email to that person really went out."""
    return session.scalars(
        sa.select(OutboxMessage)
        .join(Lead, Lead.id == OutboxMessage.lead_id)
        .where(
            Lead.email_key == recipient.strip().lower(),
            OutboxMessage.kind.in_(PERSON_KINDS),
            OutboxMessage.dealer_id.is_(None),
            OutboxMessage.status.in_(SENT_STATUSES),
        )
        .order_by(OutboxMessage.id.desc())
        .limit(1)
    ).first()


def record_notice(
    session: Session, settings, notice: Notice, source: str, by_recipient: bool = False
) -> str:
    """Record one notice and apply it, in one transaction (committed). Returns "recorded",
    "duplicate" (already recorded) or "unmatched" (answers no email of ours). `by_recipient`:
    see `find_target`."""
    key = notification_key(source, notice)
    if session.scalar(sa.select(BounceEvent.id).where(BounceEvent.notification_key == key)):
        return DUPLICATE
    target = find_target(session, settings, notice, by_recipient)
    if target is None:
        return UNMATCHED
    event = BounceEvent(
        notification_key=key,
        kind=notice.kind,
        source=source,
        lead_id=target.lead_id,
        outbox_id=target.outbox_id,
        status=notice.status,
        diagnostic=notice.diagnostic,
        suppressed=False,
        received_at=utcnow(),
    )
    session.add(event)
    try:
        session.flush()
    except IntegrityError:  # the same notification, recorded by another process just now
        session.rollback()
        return DUPLICATE
    if target.lead_id is not None:
        _apply(session, settings, event, target.lead_id, source)
    session.commit()
    return RECORDED


def _apply(session: Session, settings, event: BounceEvent, lead_id: int, source: str) -> None:
    if event.kind == COMPLAINT:
        context = ConsentContext(None, None, f"complaint:{source}", None)
        withdraw_lead(session, lead_id, context, "withdrawn: the person complained")
    elif event.kind == HARD or (
        event.kind == SOFT
        and _soft_bounces(session, settings, lead_id) >= settings.soft_bounce_limit
    ):
        event.suppressed = True
        suppress(session, lead_id)


def _soft_bounces(session: Session, settings, lead_id: int) -> int:
    since = utcnow() - timedelta(days=settings.soft_bounce_days)
    return (
        session.scalar(
            sa.select(sa.func.count()).where(
                BounceEvent.lead_id == lead_id,
                BounceEvent.kind == SOFT,
                BounceEvent.received_at >= since,
            )
        )
        or 0
    )


def suppress(session: Session, lead_id: int) -> None:
    """Mark the address bounced and skip the person's emails not yet sent (caller commits)."""
    now = utcnow()
    session.execute(
        sa.update(Lead)
        .where(Lead.id == lead_id)
        .values(bounced_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    skip_open_messages(session, lead_id, SUPPRESSED_REASON, PERSON_KINDS)
