"""A dealer's leads as a person reads them (newest first, paged) and the dealer's response
figures. The feed in `leads.py` serves machines in delivery order; this serves the console."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from leadsvc.db import utcnow
from leadsvc.dealers.leads import SERVED_STATES, lead_record
from leadsvc.leads.models import Lead

#: How far back the response figures look.
FIGURES_DAYS = 90


@dataclass(frozen=True)
class LeadPage:
    leads: list[dict[str, Any]]
    #: The id to continue before for the next (older) page, or None on the last page.
    older_than: int | None


@dataclass(frozen=True)
class ResponseFigures:
    waiting: int
    acknowledged: int
    #: Median time from arrival to acknowledgement over the last FIGURES_DAYS, or None.
    median_to_acknowledge: timedelta | None
    oldest_waiting: timedelta | None


def _own(dealer_id: int):
    return (Lead.dealer_id == dealer_id) & Lead.consent_status.in_(SERVED_STATES)


def recent_leads(
    session: Session, dealer_id: int, *, only_new: bool, older_than: int | None, limit: int
) -> LeadPage:
    """The dealer's leads, newest first, `limit` a page (keyset paging on the id)."""
    query = sa.select(Lead).where(_own(dealer_id))
    if only_new:
        query = query.where(Lead.acknowledged_at.is_(None))
    if older_than is not None:
        query = query.where(Lead.id < older_than)
    rows = list(session.scalars(query.order_by(Lead.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return LeadPage([lead_record(lead) for lead in rows], rows[-1].id if more else None)


def response_figures(session: Session, dealer_id: int) -> ResponseFigures:
    """Leads waiting for acknowledgement, and how fast the dealer acknowledged lately."""
    now = utcnow()
    waiting, oldest = session.execute(
        sa.select(sa.func.count(), sa.func.min(Lead.created_at)).where(
            _own(dealer_id), Lead.acknowledged_at.is_(None)
        )
    ).one()
    pairs = session.execute(
        sa.select(Lead.created_at, Lead.acknowledged_at).where(
            _own(dealer_id),
            Lead.acknowledged_at.is_not(None),
            Lead.created_at >= now - timedelta(days=FIGURES_DAYS),
        )
    ).all()
    seconds = [(acked - created).total_seconds() for created, acked in pairs]
    median = timedelta(seconds=statistics.median(seconds)) if seconds else None
    return ResponseFigures(waiting, len(seconds), median, (now - oldest) if oldest else None)
