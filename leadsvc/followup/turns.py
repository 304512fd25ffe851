"""Dealers' turns with leads: opened when a lead reaches an active dealer, ended when it is
answered, withdrawn or moved, and paused while the dealer is deactivated.

Every change is a conditional statement on the turn's row (its state as read), so several
relays running this at once change each turn once; the unique (lead, dealer, feed position)
key keeps a turn from being opened twice.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from leadsvc.dealers.models import Dealer, LeadMove
from leadsvc.followup.calendars import Calendars
from leadsvc.followup.models import ANSWERED, CLOSED, OPEN, FollowUp
from leadsvc.leads.models import Lead

#: Consent states in which a dealer is expected to answer (withdrawn and erased people are not
#: to be contacted; a pending double opt-in is not a lead yet).
ACTIVE_CONSENT = ("given", "confirmed")
OVERDUE_MOVE = "response_overdue"
BATCH = 500

_TURNS = FollowUp.__table__


def _same_assignment():
    return (Lead.dealer_id == FollowUp.dealer_id) & (Lead.delivery_seq == FollowUp.delivery_seq)


def _assigned_at(session: Session, lead: sa.Row) -> tuple[datetime, str]:
    """When the lead reached its dealer, and how: routing, or reassignment after a missed target."""
    move = session.execute(
        sa.select(LeadMove.moved_at, LeadMove.reason, LeadMove.to_dealer_id)
        .where(LeadMove.lead_id == lead.id)
        .order_by(LeadMove.moved_at.desc(), LeadMove.id.desc())
        .limit(1)
    ).first()
    moments = [lead.created_at, lead.confirmed_at, move.moved_at if move else None]
    via = "routing"
    if move is not None and move.reason == OVERDUE_MOVE and move.to_dealer_id == lead.dealer_id:
        via = "reassignment"
    return max(moment for moment in moments if moment is not None), via


def _insert(session: Session):
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(_TURNS)


def start_turns(session: Session, calendars: Calendars, now: datetime) -> int:
    """Open a turn for each lead waiting on an active dealer that has none yet; commits.

    The clock starts when the lead reached the dealer; a lead first seen after its whole target
    had already passed (a lead from before follow-up existed, or the relay was down that long)
    starts its clock now instead of being moved at once.
    """
    has_turn = sa.exists().where(
        FollowUp.lead_id == Lead.id,
        FollowUp.dealer_id == Lead.dealer_id,
        FollowUp.delivery_seq == Lead.delivery_seq,
    )
    leads = session.execute(
        sa.select(Lead.id, Lead.dealer_id, Lead.delivery_seq, Lead.created_at, Lead.confirmed_at)
        .join(Dealer, Dealer.id == Lead.dealer_id)
        .where(
            Dealer.active,
            Lead.acknowledged_at.is_(None),
            Lead.consent_status.in_(ACTIVE_CONSENT),
            Lead.dealer_contact.is_(True),
            ~has_turn,
        )
        .order_by(Lead.id)
        .limit(BATCH)
    ).all()
    values = [turn_values(session, calendars, lead, now) for lead in leads]
    if values:
        session.execute(_insert(session).values(values).on_conflict_do_nothing())
    session.commit()
    return len(values)


def turn_values(session: Session, calendars: Calendars, lead, now: datetime) -> dict:
    """The columns of a new turn for `lead` (a row or a Lead) with its current dealer."""
    dealer = session.get(Dealer, lead.dealer_id)
    calendar, seconds = calendars.of(dealer), calendars.target_seconds(dealer)
    started, via = _assigned_at(session, lead)
    started = min(started, now)
    if calendar.add(started, seconds) <= now:
        started = now
    return {
        "lead_id": lead.id,
        "dealer_id": lead.dealer_id,
        "delivery_seq": lead.delivery_seq,
        "via": via,
        "target_hours": seconds / 3600,
        "started_at": started,
        "remind_at": calendar.add(started, seconds / 2),
        "due_at": calendar.add(started, seconds),
        "state": OPEN,
        "paused_seconds": 0.0,
    }


def open_turn(session: Session, calendars: Calendars, lead, now: datetime) -> FollowUp:
    """The turn of the lead's current assignment, opened now if no pass has opened it yet."""
    mine = (
        (FollowUp.lead_id == lead.id)
        & (FollowUp.dealer_id == lead.dealer_id)
        & (FollowUp.delivery_seq == lead.delivery_seq)
    )
    turn = session.scalars(sa.select(FollowUp).where(mine)).one_or_none()
    if turn is None:
        values = turn_values(session, calendars, lead, now)
        session.execute(_insert(session).values(values).on_conflict_do_nothing())
        turn = session.scalars(sa.select(FollowUp).where(mine)).one()
    return turn


def _end(session: Session, turn_id: int, **values) -> int:
    return session.execute(
        sa.update(FollowUp)
        .where(FollowUp.id == turn_id, FollowUp.state == OPEN)
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount


def answer_values(calendars: Calendars, turn: FollowUp, dealer: Dealer, at: datetime, by: str):
    """The columns of a turn answered at `at` by `by` (ack or crm)."""
    seconds = calendars.of(dealer).between(turn.started_at, at) - (turn.paused_seconds or 0.0)
    return {
        "state": ANSWERED,
        "answered_at": at,
        "answered_by": by,
        "answer_seconds": max(0.0, seconds),
        "ended_at": at,
        "end_reason": f"answered_{by}",
    }


def close_turns(session: Session, calendars: Calendars, now: datetime) -> int:
    """End open turns whose lead was acknowledged, withdrawn, moved elsewhere, or whose person
    asked not to be contacted by the dealer; commits."""
    rows = session.execute(
        sa.select(FollowUp, Lead, Dealer)
        .join(Lead, Lead.id == FollowUp.lead_id)
        .join(Dealer, Dealer.id == FollowUp.dealer_id)
        .where(
            FollowUp.state == OPEN,
            sa.or_(
                ~_same_assignment(),
                Lead.consent_status.not_in(ACTIVE_CONSENT),
                Lead.dealer_contact.is_(False),
                Lead.acknowledged_at.is_not(None),
            ),
        )
        .order_by(FollowUp.id)
        .limit(BATCH)
        .execution_options(populate_existing=True)
    ).all()
    ended = 0
    for turn, lead, dealer in rows:
        if lead.dealer_id != turn.dealer_id or lead.delivery_seq != turn.delivery_seq:
            values = {"state": CLOSED, "ended_at": now, "end_reason": "moved_elsewhere"}
        elif lead.consent_status not in ACTIVE_CONSENT:
            values = {"state": CLOSED, "ended_at": now, "end_reason": lead.consent_status}
        elif not lead.dealer_contact:
            values = {"state": CLOSED, "ended_at": now, "end_reason": "no_dealer_contact"}
        else:
            values = answer_values(calendars, turn, dealer, min(lead.acknowledged_at, now), "ack")
        ended += _end(session, turn.id, **values)
    session.commit()
    return ended


def pause_and_resume(session: Session, calendars: Calendars, now: datetime) -> int:
    """Stop the clock of open turns whose dealer is deactivated, and restart it (deadlines moved
    on by the open time that passed) when it is active again; commits."""
    changed = session.execute(
        sa.update(FollowUp)
        .where(
            FollowUp.state == OPEN,
            FollowUp.paused_at.is_(None),
            FollowUp.dealer_id.in_(sa.select(Dealer.id).where(~Dealer.active)),
        )
        .values(paused_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    paused = session.execute(
        sa.select(FollowUp, Dealer)
        .join(Dealer, Dealer.id == FollowUp.dealer_id)
        .where(FollowUp.state == OPEN, FollowUp.paused_at.is_not(None), Dealer.active)
        .limit(BATCH)
    ).all()
    for turn, dealer in paused:
        calendar = calendars.of(dealer)
        since = turn.paused_at
        values = {
            "paused_at": None,
            "paused_seconds": (turn.paused_seconds or 0.0) + calendar.between(since, now),
            "due_at": calendar.add(now, calendar.between(since, turn.due_at)),
        }
        if turn.reminded_at is None:
            values["remind_at"] = calendar.add(now, calendar.between(since, turn.remind_at))
        changed += session.execute(
            sa.update(FollowUp)
            .where(FollowUp.id == turn.id, FollowUp.paused_at == since)
            .values(**values)
            .execution_options(synchronize_session=False)
        ).rowcount
    session.commit()
    return changed
