"""Figures of the outbox for the console's overview: its health, outbound jobs per hour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from leadsvc.db import utcnow
from leadsvc.outbox.messages import FAILED, OPEN, UNKNOWN, WAITING
from leadsvc.outbox.models import OutboxAttempt, OutboxMessage

#: The outcomes of a try the overview counts: handed over and confirmed, given up, handed over
#: with no reply (the process died or the reply was lost).
JOB_OUTCOMES = ("sent", "failed", "unknown")


def _hour_of(session: Session, column):
    if session.get_bind().dialect.name == "postgresql":
        return sa.func.date_trunc("hour", column, "UTC")
    return sa.func.strftime("%Y-%m-%d %H:00:00", column)


def _as_hour(value) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    return datetime.fromisoformat(str(value)[:19])


def jobs_per_hour(session: Session, hours: int = 48) -> list[tuple[datetime, int, int, int]]:
    """(hour, sent, failed, unknown) for each of the last `hours` hours (UTC), oldest first,
    counted from the tries that finished in that hour."""
    first = utcnow().replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
    hour = _hour_of(session, OutboxAttempt.finished_at)
    counts: dict[tuple[datetime, str], int] = {}
    for value, outcome, count in session.execute(
        sa.select(hour, OutboxAttempt.outcome, sa.func.count())
        .where(OutboxAttempt.finished_at >= first, OutboxAttempt.outcome.in_(JOB_OUTCOMES))
        .group_by(hour, OutboxAttempt.outcome)
    ):
        counts[_as_hour(value), outcome] = count
    rows = []
    for offset in range(hours):
        at = (first + timedelta(hours=offset)).replace(tzinfo=None)
        rows.append((at, *(counts.get((at, outcome), 0) for outcome in JOB_OUTCOMES)))
    return rows


def outbox_health(session: Session) -> dict:
    """Rows waiting (pending or queued), failed and unknown, and the age in seconds of the
    oldest row not yet final: each from an index of the few rows it counts, never a scan of
    every row ever sent."""
    waiting = session.scalar(
        sa.select(sa.func.count())
        .select_from(OutboxMessage)
        .where(OutboxMessage.status.in_(WAITING))
    )
    troubled = dict(
        session.execute(
            sa.select(OutboxMessage.status, sa.func.count())
            .where(OutboxMessage.status.in_((FAILED, UNKNOWN)))
            .group_by(OutboxMessage.status)
        ).all()
    )
    oldest = session.scalar(
        sa.select(sa.func.min(OutboxMessage.created_at)).where(OutboxMessage.status.in_(OPEN))
    )
    return {
        "pending": waiting,
        "failed": troubled.get(FAILED, 0),
        "unknown": troubled.get(UNKNOWN, 0),
        "oldest_open_seconds": (utcnow() - oldest).total_seconds() if oldest else None,
    }
