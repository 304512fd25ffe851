"""What dispatchers do with outbox rows: take due pending rows for rq (each row generation by
exactly one dispatcher), give back those whose hand-off failed, and put queued rows whose rq job
is gone back to pending under their next generation."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from leadsvc.db import utcnow
from leadsvc.outbox.messages import (
    FAILED,
    PENDING,
    QUEUED,
    QueuedRow,
    is_due,
    lock_message,
)
from leadsvc.outbox.models import OutboxMessage

_TABLE = OutboxMessage.__table__


def take_for_dispatch(session: Session, limit: int = 500) -> list[QueuedRow]:
    """Move up to `limit` due pending rows to `queued` and return them; commits.

    Rows another dispatcher is taking at the same moment are skipped (FOR UPDATE SKIP LOCKED on
    PostgreSQL; SQLite has one writer at a time), so each row generation is handed to rq by
    exactly one dispatcher."""
    due = (
        sa.select(_TABLE.c.id)
        .where(_TABLE.c.status == PENDING, is_due())
        .order_by(_TABLE.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    taken = session.execute(
        sa.update(_TABLE)
        .where(_TABLE.c.id.in_(due.scalar_subquery()))
        .values(status=QUEUED, updated_at=utcnow())
        .returning(_TABLE.c.id, _TABLE.c.kind, _TABLE.c.generation)
    ).all()
    session.commit()
    return [QueuedRow(*row) for row in sorted(taken)]


def give_back(session: Session, rows: list[QueuedRow]) -> int:
    """Rows whose hand-off to rq failed go back to pending under their next generation (their
    job may or may not have reached Redis); commits. Returns how many were still queued."""
    if not rows:
        return 0
    changed = session.execute(
        sa.update(_TABLE)
        .where(
            sa.tuple_(_TABLE.c.id, _TABLE.c.generation).in_([(r.id, r.generation) for r in rows]),
            _TABLE.c.status == QUEUED,
        )
        .values(status=PENDING, generation=_TABLE.c.generation + 1, updated_at=utcnow())
    ).rowcount
    session.commit()
    return changed


def queued_before(
    session: Session, moment: datetime, after_id: int = 0, limit: int = 500
) -> list[QueuedRow]:
    """Queued rows last changed before `moment`, by id (the relay's sweep checks their jobs)."""
    rows = session.execute(
        sa.select(_TABLE.c.id, _TABLE.c.kind, _TABLE.c.generation)
        .where(_TABLE.c.status == QUEUED, _TABLE.c.updated_at < moment, _TABLE.c.id > after_id)
        .order_by(_TABLE.c.id)
        .limit(limit)
    ).all()
    return [QueuedRow(*row) for row in rows]


def next_generation(session: Session, row: QueuedRow, max_generations: int) -> str:
    """A queued row whose job is gone: back to pending under its next generation, or failed
    after `max_generations` jobs ended without settling it; commits. Returns the new status, or
    "settled" if the row moved on meanwhile."""
    current = lock_message(session, row.id)
    if current is None or current.status != QUEUED or current.generation != row.generation:
        session.rollback()
        return "settled"
    current.updated_at = utcnow()
    if current.generation >= max_generations:
        current.status = FAILED
        current.last_error = f"given up after {current.generation} jobs ended without settling it"
    else:
        current.status = PENDING
        current.generation += 1
    session.commit()
    return current.status
