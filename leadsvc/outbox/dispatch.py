"""What dispatchers do with outbox rows: take due pending rows for rq (each row generation by
exactly one dispatcher), give back those whose hand-off failed, and put queued rows whose rq job
is gone back to pending under their next generation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from leadsvc.db import utcnow
from leadsvc.outbox.kinds import channel_of
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


@dataclass(frozen=True)
class Batch:
    """Rows of one channel that one rq job delivers, in order."""

    job_id: str
    channel: str
    rows: tuple[QueuedRow, ...]


def take_for_dispatch(session: Session, limit: int = 500, batch_size: int = 20) -> list[Batch]:
    """Move up to `limit` due pending rows to `queued`, in batches of at most `batch_size` rows
    of one channel, each named by its job id; commits.

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
    batches = _batches([QueuedRow(*row) for row in sorted(taken)], batch_size)
    for batch in batches:
        session.execute(
            sa.update(_TABLE)
            .where(_TABLE.c.id.in_([row.id for row in batch.rows]))
            .values(job_id=batch.job_id)
        )
    session.commit()
    return batches


def _batches(rows: list[QueuedRow], size: int) -> list[Batch]:
    by_channel: dict[str, list[QueuedRow]] = {}
    for row in rows:
        by_channel.setdefault(channel_of(row.kind), []).append(row)
    batches = []
    for channel, channel_rows in by_channel.items():
        for start in range(0, len(channel_rows), size):
            chunk = tuple(channel_rows[start : start + size])
            batches.append(Batch(chunk[0].job_id, channel, chunk))
    return batches


def give_back(session: Session, batches: list[Batch]) -> int:
    """Rows whose hand-off to rq failed go back to pending under their next generation (their
    job may or may not have reached Redis); commits. Returns how many were still queued."""
    rows = [row for batch in batches for row in batch.rows]
    if not rows:
        return 0
    changed = session.execute(
        sa.update(_TABLE)
        .where(
            sa.tuple_(_TABLE.c.id, _TABLE.c.generation).in_([(r.id, r.generation) for r in rows]),
            _TABLE.c.status == QUEUED,
        )
        .values(
            status=PENDING, generation=_TABLE.c.generation + 1, job_id=None, updated_at=utcnow()
        )
    ).rowcount
    session.commit()
    return changed


def queued_before(
    session: Session, moment: datetime, after_id: int = 0, limit: int = 500
) -> list[tuple[QueuedRow, str]]:
    """Queued rows last changed before `moment`, by id, each with the id of the rq job that
    holds it (the relay's sweep checks those jobs)."""
    rows = session.execute(
        sa.select(_TABLE.c.id, _TABLE.c.kind, _TABLE.c.generation, _TABLE.c.job_id)
        .where(_TABLE.c.status == QUEUED, _TABLE.c.updated_at < moment, _TABLE.c.id > after_id)
        .order_by(_TABLE.c.id)
        .limit(limit)
    ).all()
    queued = [(QueuedRow(id, kind, generation), job) for id, kind, generation, job in rows]
    return [(row, job or row.job_id) for row, job in queued]


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
    current.job_id = None
    session.commit()
    return current.status
