"""A dealer's CRM says it answered a lead: the turn ends answered, and no reminder follows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from leadsvc.dealers.leads import SERVED_STATES
from leadsvc.dealers.models import Dealer
from leadsvc.followup.actions import locked_lead
from leadsvc.followup.calendars import Calendars
from leadsvc.followup.models import OPEN, FollowUp
from leadsvc.followup.turns import ACTIVE_CONSENT, answer_values, open_turn
from leadsvc.outbox.messages import REMINDER_KINDS, skip_open_messages


@dataclass(frozen=True)
class Answer:
    lead_id: int
    answered_at: datetime | None
    answered_by: str | None
    #: Whether the answer came within the response target (None: no clock ran for this lead).
    within_target: bool | None


def record_answer(
    session: Session, settings, dealer_id: int, lead_id: int, now: datetime
) -> Answer:
    """Mark the dealer's lead answered (idempotent: a second call reports the first answer);
    LookupError if the lead is not this dealer's. Commits."""
    lead = locked_lead(session, lead_id)
    if lead is None or lead.dealer_id != dealer_id or lead.consent_status not in SERVED_STATES:
        session.rollback()
        raise LookupError(f"no lead {lead_id} for this dealer")
    if lead.consent_status not in ACTIVE_CONSENT:
        session.commit()
        return Answer(lead_id, None, None, None)
    calendars = Calendars(session, settings)
    turn = open_turn(session, calendars, lead, now)
    if turn.state == OPEN:
        dealer = session.get(Dealer, dealer_id)
        session.execute(
            sa.update(FollowUp)
            .where(FollowUp.id == turn.id, FollowUp.state == OPEN)
            .values(**answer_values(calendars, turn, dealer, now, "crm"))
            .execution_options(synchronize_session=False)
        )
        skip_open_messages(session, lead_id, "the dealer answered the lead", REMINDER_KINDS)
    session.commit()
    session.refresh(turn)
    within = None
    if turn.answer_seconds is not None:
        within = turn.answer_seconds <= turn.target_hours * 3600
    return Answer(lead_id, turn.answered_at, turn.answered_by, within)
