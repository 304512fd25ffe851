"""What happens to an unanswered lead: a reminder at half its target, a move at the target.

Each reminder and each move is one transaction that first locks the lead's row and then claims
the turn with a conditional UPDATE (`reminded_at IS NULL`, `state = 'open'`); the outbox rows,
the lead's new dealer and the recorded move commit with that claim or not at all. A relay that
dies inside the transaction leaves nothing behind, and one that runs at the same time as
another finds the turn already claimed: each turn is reminded once and moved once.
"""

from __future__ import annotations

import math
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from leadsvc.commit_order import next_delivery_seq
from leadsvc.dealers.models import Dealer, LeadMove, Territory
from leadsvc.followup.models import MOVED, OPEN, FollowUp
from leadsvc.followup.turns import ACTIVE_CONSENT, BATCH, OVERDUE_MOVE
from leadsvc.geo.models import ZipCode
from leadsvc.leads.models import Lead
from leadsvc.outbound.subscription import notify_dealer
from leadsvc.outbox.messages import (
    DEALER_MOVED_EMAIL,
    DEALER_MOVED_WEBHOOK,
    DEALER_REMINDER_EMAIL,
    DEALER_REMINDER_WEBHOOK,
    add_messages,
)

EARTH_RADIUS_KM = 6371.0088


def locked_lead(session: Session, lead_id: int) -> Lead | None:
    """The lead, its row locked for this transaction (on SQLite a write takes the lock)."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(
            sa.update(Lead)
            .where(Lead.id == lead_id)
            .values(updated_at=Lead.updated_at)
            .execution_options(synchronize_session=False)
        )
    return session.scalars(
        sa.select(Lead)
        .where(Lead.id == lead_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()


def _still_waiting(lead: Lead | None, turn: sa.Row) -> bool:
    """Whether the turn's dealer still has the lead, unanswered, for a person who consents."""
    return (
        lead is not None
        and lead.dealer_id == turn.dealer_id
        and lead.delivery_seq == turn.delivery_seq
        and lead.acknowledged_at is None
        and lead.consent_status in ACTIVE_CONSENT
        and lead.dealer_contact
    )


def _notices(session: Session, email_kind: str, webhook_kind: str, lead_id: int, dealer_id: int):
    webhook_url = session.scalar(sa.select(Dealer.webhook_url).where(Dealer.id == dealer_id))
    messages = [(email_kind, lead_id, dealer_id)]
    if webhook_url:
        messages.append((webhook_kind, lead_id, dealer_id))
    return add_messages(session, messages)


def _due(column, now: datetime):
    return (
        sa.select(FollowUp.id, FollowUp.lead_id, FollowUp.dealer_id, FollowUp.delivery_seq)
        .where(FollowUp.state == OPEN, FollowUp.paused_at.is_(None), column <= now)
        .order_by(column, FollowUp.id)
        .limit(BATCH)
    )


def send_reminders(session: Session, now: datetime) -> int:
    """Remind the dealer of each open turn past its reminder time, once; commits each."""
    turns = session.execute(_due(FollowUp.remind_at, now).where(FollowUp.reminded_at.is_(None)))
    reminded = 0
    for turn in turns.all():
        lead = locked_lead(session, turn.lead_id)
        claimed = (
            _still_waiting(lead, turn)
            and session.execute(
                sa.update(FollowUp)
                .where(
                    FollowUp.id == turn.id, FollowUp.state == OPEN, FollowUp.reminded_at.is_(None)
                )
                .values(reminded_at=now)
                .execution_options(synchronize_session=False)
            ).rowcount
        )
        if claimed:
            _notices(
                session, DEALER_REMINDER_EMAIL, DEALER_REMINDER_WEBHOOK, lead.id, turn.dealer_id
            )
            reminded += 1
        session.commit()
    return reminded


def _distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def next_dealer(session: Session, lead: Lead, max_km: float) -> tuple[int, float] | None:
    """The nearest active dealer within `max_km` of the lead's ZIP that has not had the lead yet
    (ties to the lowest code), and its distance; None if there is none."""
    centre = session.execute(
        sa.select(ZipCode.latitude, ZipCode.longitude).where(ZipCode.zip5 == lead.zip5)
    ).first()
    if centre is None or centre.latitude is None:
        return None
    had = sa.select(FollowUp.dealer_id).where(FollowUp.lead_id == lead.id)
    candidates = session.execute(
        sa.select(Dealer.id, Dealer.code, Dealer.latitude, Dealer.longitude).where(
            Dealer.active, Dealer.id.not_in(had), Dealer.id != lead.dealer_id
        )
    ).all()
    ranked = sorted(
        (_distance_km(tuple(centre), (d.latitude, d.longitude)), d.code, d.id) for d in candidates
    )
    if not ranked or ranked[0][0] > max_km:
        return None
    km, _, dealer_id = ranked[0]
    return dealer_id, round(km, 3)


def _stays(session: Session, settings, lead: Lead) -> str | None:
    """Why an overdue lead stays with its dealer, or None if it moves on."""
    if lead.routing_reason == "territory":
        moves_on = session.scalar(
            sa.select(Territory.reassign_overdue).where(
                Territory.zip5 == lead.zip5, Territory.dealer_id == lead.dealer_id
            )
        )
        if not moves_on:
            return "territory"
    moved = session.scalar(
        sa.select(sa.func.count()).where(
            LeadMove.lead_id == lead.id, LeadMove.reason == OVERDUE_MOVE
        )
    )
    return "moved_enough" if moved >= settings.reassign_max_times else None


def _move(session: Session, settings, lead: Lead, now: datetime) -> int | None:
    """Offer the lead to the next dealer (or the unassigned pool); returns the new dealer id."""
    old_dealer = lead.dealer_id
    target = next_dealer(session, lead, settings.reassign_max_km)
    new_dealer, km = target if target else (None, None)
    session.add(
        LeadMove(
            lead_id=lead.id,
            from_dealer_id=old_dealer,
            to_dealer_id=new_dealer,
            reason=OVERDUE_MOVE,
            moved_at=now,
        )
    )
    session.execute(
        sa.update(Lead)
        .where(Lead.id == lead.id)
        .values(
            dealer_id=new_dealer,
            distance_km=km,
            routing_reason="reassigned" if new_dealer else "unassigned",
            acknowledged_at=None,
            delivery_seq=next_delivery_seq(session.get_bind().dialect.name),
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    _notices(session, DEALER_MOVED_EMAIL, DEALER_MOVED_WEBHOOK, lead.id, old_dealer)
    notify_dealer(session, lead.id, new_dealer)
    return new_dealer


def move_overdue(session: Session, settings, now: datetime) -> int:
    """Move each open turn's lead past its target (or mark it overdue where it stays); commits."""
    turns = session.execute(_due(FollowUp.due_at, now).where(FollowUp.overdue_at.is_(None)))
    moved = 0
    for turn in turns.all():
        lead = locked_lead(session, turn.lead_id)
        if not _still_waiting(lead, turn):
            session.commit()  # the next pass ends the turn
            continue
        stays = _stays(session, settings, lead)
        values = (
            {"overdue_at": now}
            if stays
            else {"state": MOVED, "overdue_at": now, "ended_at": now, "end_reason": OVERDUE_MOVE}
        )
        claimed = session.execute(
            sa.update(FollowUp)
            .where(FollowUp.id == turn.id, FollowUp.state == OPEN, FollowUp.overdue_at.is_(None))
            .values(**values)
            .execution_options(synchronize_session=False)
        ).rowcount
        if claimed and not stays:
            _move(session, settings, lead, now)
            moved += 1
        session.commit()
    return moved
