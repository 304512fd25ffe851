"""Retention: leads (and their messages) past the retention period are removed; consent events
and seals never are (they are the proof, and hold no name)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from leadsvc.db import utcnow
from leadsvc.leads.models import Lead
from leadsvc.outbox.models import OutboxMessage


@dataclass(frozen=True)
class PurgeReport:
    cutoff: str
    leads: int
    outbox_rows: int
    applied: bool


def purge(session: Session, older_than_days: int, *, apply: bool = False) -> PurgeReport:
    """Leads not updated for `older_than_days` and their outbox rows (and attempts, moves);
    a dry run unless `apply`."""
    if older_than_days < 1:
        raise ValueError("--older-than must be at least 1 day")
    cutoff = utcnow() - timedelta(days=older_than_days)
    old = sa.select(Lead.id).where(Lead.updated_at < cutoff)
    leads = session.scalar(sa.select(sa.func.count()).select_from(old.subquery())) or 0
    rows = (
        session.scalar(
            sa.select(sa.func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.lead_id.in_(old))
        )
        or 0
    )
    if apply:
        # Attempts and lead moves go with their rows (ON DELETE CASCADE); consent events stay.
        session.execute(sa.delete(OutboxMessage).where(OutboxMessage.lead_id.in_(old)))
        session.execute(sa.delete(Lead).where(Lead.updated_at < cutoff))
        session.commit()
    return PurgeReport(cutoff.isoformat(timespec="seconds"), leads, rows, apply)
