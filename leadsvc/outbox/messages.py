"""Outbox rows: written in the transaction that needs a message sent, and their life cycle.

    pending --dispatch--> queued --claim--> sending --hand-off--> handed_off --reply--> sent
       ^                    ^                  |                      |
       |                    +---- retry -------+ (definite failure)   +-- died or lost the
       +-- job lost (new generation) --+                                  reply --> unknown
    failed: the tries are used up, or the failure is permanent (kept, never deleted)
    skipped: no longer to be sent (the person unsubscribed, or the lead may not be shared)

`pending` rows wait for a dispatcher (`leadsvc relay`, which looks every few tens of
milliseconds); `queued` rows have a job in rq (or a retry scheduled there). `add_messages` also
notes the rows on the session, so the in-process drainer of the same process is woken after the
commit. Nothing here talks to Redis.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from leadsvc.db import utcnow
from leadsvc.outbox.kinds import is_idempotent
from leadsvc.outbox.models import OutboxAttempt, OutboxMessage

WELCOME_EMAIL = "welcome_email"
CONFIRM_EMAIL = "confirm_email"
DEALER_EMAIL = "dealer_email"
DEALER_WEBHOOK = "dealer_webhook"
#: Deletion notices to a dealer that received a lead whose person was erased.
DEALER_ERASURE_EMAIL = "dealer_erasure_email"
DEALER_ERASURE_WEBHOOK = "dealer_erasure_webhook"
ERASURE_KINDS = (DEALER_ERASURE_EMAIL, DEALER_ERASURE_WEBHOOK)
#: Follow-up notices: a lead half way to its response target, and a lead moved on at it.
DEALER_REMINDER_EMAIL = "dealer_reminder_email"
DEALER_REMINDER_WEBHOOK = "dealer_reminder_webhook"
DEALER_MOVED_EMAIL = "dealer_moved_email"
DEALER_MOVED_WEBHOOK = "dealer_moved_webhook"
REMINDER_KINDS = (DEALER_REMINDER_EMAIL, DEALER_REMINDER_WEBHOOK)
MOVED_KINDS = (DEALER_MOVED_EMAIL, DEALER_MOVED_WEBHOOK)
KINDS = (
    WELCOME_EMAIL,
    CONFIRM_EMAIL,
    DEALER_EMAIL,
    DEALER_WEBHOOK,
    *ERASURE_KINDS,
    *REMINDER_KINDS,
    *MOVED_KINDS,
)
PERSON_KINDS = (WELCOME_EMAIL, CONFIRM_EMAIL)
DEALER_KINDS = (DEALER_EMAIL, DEALER_WEBHOOK)

PENDING, QUEUED, SENDING, HANDED_OFF = "pending", "queued", "sending", "handed_off"
SENT, FAILED, UNKNOWN, SKIPPED = "sent", "failed", "unknown", "skipped"
STATUSES = (PENDING, QUEUED, SENDING, HANDED_OFF, SENT, FAILED, UNKNOWN, SKIPPED)
#: Waiting for a try: for a dispatcher (pending) or for the job rq holds (queued).
WAITING = (PENDING, QUEUED)
IN_FLIGHT = (SENDING, HANDED_OFF)
FINAL = (SENT, FAILED, UNKNOWN, SKIPPED)
#: Not yet in a final state: what the outbox still owes.
OPEN = (PENDING, QUEUED, SENDING, HANDED_OFF)

#: A claim outlives the job timeout by this much (clock differences between machines). A try
#: that is somehow still running past it cannot send anyway: see `mark_handed_off`.
LEASE_MARGIN_SECONDS = 2
#: Info key on a session: (id, kind, generation) of rows to dispatch after the commit.
NEW_ROWS_KEY = "leadsvc.outbox.new"


@dataclass(frozen=True)
class QueuedRow:
    """What the dispatcher needs of a row to enqueue it."""

    id: int
    kind: str
    generation: int

    @property
    def job_id(self) -> str:
        return job_id(self.id, self.generation)


_TABLE = OutboxMessage.__table__


def job_id(outbox_id: int, generation: int) -> str:
    """The rq job id of one generation of an outbox row (unique=True dedups on it)."""
    return f"outbox-{outbox_id}-{generation}"


def _note_for_dispatch(session: Session, row: OutboxMessage) -> None:
    session.info.setdefault(NEW_ROWS_KEY, []).append(QueuedRow(row.id, row.kind, row.generation))


def add_message(
    session: Session, kind: str, lead_id: int, dealer_id: int | None = None
) -> QueuedRow:
    """Write one outbox row in the caller's transaction; it is dispatched after the commit."""
    return add_messages(session, [(kind, lead_id, dealer_id)])[0]


def _payload(lead_id: int, dealer_id: int | None) -> dict[str, int]:
    return {"lead_id": lead_id} | ({"dealer_id": dealer_id} if dealer_id is not None else {})


_COLUMNS = (
    "kind",
    "lead_id",
    "dealer_id",
    "payload",
    "status",
    "attempts",
    "generation",
    "last_error",
    "created_at",
    "updated_at",
)


@functools.cache
def _insert_rows(count: int, together_with: sa.Insert | None) -> sa.Insert:
    """The INSERT of `count` rows (with `together_with` as a data-modifying WITH), built once
    per shape and bound per execution: INSERT ... SELECT of bound rows, which SQLAlchemy caches
    compiled (a multi-row VALUES clause it compiles anew every time)."""
    rows = [
        sa.select(
            *(
                sa.bindparam(f"{name}_{n}", type_=_TABLE.c[name].type).label(name)
                for name in _COLUMNS
            )
        )
        for n in range(count)
    ]
    source = rows[0] if count == 1 else sa.union_all(*rows)
    statement = (
        sa.insert(_TABLE)
        .from_select(list(_COLUMNS), source)
        .returning(_TABLE.c.id, _TABLE.c.kind, _TABLE.c.status)
    )
    if together_with is not None:
        statement = statement.add_cte(together_with.cte("together_with"))
    return statement


def add_messages(
    session: Session,
    messages: list[tuple[str, int, int | None]],
    *,
    together_with: tuple[sa.Insert, dict] | None = None,
    held_back: Sequence[tuple[str, int, int | None, str]] = (),
) -> list[QueuedRow]:
    """Write outbox rows (kind, lead id, dealer id or None) in the caller's transaction, in one
    statement; they are dispatched after the commit.

    `together_with`, another INSERT of the same transaction and its values, goes in the same
    statement where the database runs data-modifying WITH clauses (PostgreSQL): one round trip
    instead of two. Elsewhere it runs first, on its own. `held_back` rows (kind, lead id, dealer
    id, reason) are written in the same statement as already `skipped`, with the reason: the
    record of a message decided against (never dispatched)."""
    for kind, *_ in (*messages, *held_back):
        if kind not in KINDS:
            raise ValueError(f"unknown outbox kind {kind!r}")
    connection = session.connection()
    other, values = together_with or (None, {})
    count = len(messages) + len(held_back)
    if other is not None and (not count or connection.dialect.name != "postgresql"):
        connection.execute(other, values)
        other, values = None, {}
    if not count:
        return []
    now = utcnow()
    values = dict(values)
    rows = [(*message, PENDING, None) for message in messages]
    rows += [
        (kind, lead_id, dealer_id, SKIPPED, why) for kind, lead_id, dealer_id, why in held_back
    ]
    for n, (kind, lead_id, dealer_id, status, why) in enumerate(rows):
        row = {
            "kind": kind,
            "lead_id": lead_id,
            "dealer_id": dealer_id,
            "payload": _payload(lead_id, dealer_id),
            "status": status,
            "attempts": 0,
            "generation": 1,
            "last_error": why,
            "created_at": now,
            "updated_at": now,
        }
        values.update({f"{name}_{n}": value for name, value in row.items()})
    written = sorted(connection.execute(_insert_rows(count, other), values).all())
    queued = [QueuedRow(id, kind, 1) for id, kind, status in written if status == PENDING]
    session.info.setdefault(NEW_ROWS_KEY, []).extend(queued)
    return queued


def lock_message(session: Session, outbox_id: int) -> OutboxMessage | None:
    """The row, locked for this transaction (SELECT ... FOR UPDATE; on SQLite a write first).

    SQLite has one writer at a time: touching the row first takes the write lock, so the read
    that follows sees the latest committed state and no other process can change it meanwhile.
    """
    if session.get_bind().dialect.name == "sqlite":
        session.execute(
            sa.update(OutboxMessage)
            .where(OutboxMessage.id == outbox_id)
            .values(generation=OutboxMessage.generation, updated_at=OutboxMessage.updated_at)
            .execution_options(synchronize_session=False)
        )
    return session.scalars(
        sa.select(OutboxMessage)
        .where(OutboxMessage.id == outbox_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()


def lease_until(now: datetime, job_timeout: int) -> datetime:
    return now + timedelta(seconds=job_timeout + LEASE_MARGIN_SECONDS)


def retry_delay(intervals: Sequence[int], attempts: int) -> timedelta:
    """The wait after the `attempts`-th try failed (the last interval repeats)."""
    return timedelta(seconds=intervals[min(attempts, len(intervals)) - 1])


def running_attempt(session: Session, row: OutboxMessage) -> OutboxAttempt | None:
    """The attempt row of the row's current try, if it is still marked running."""
    return session.scalars(
        sa.select(OutboxAttempt).where(
            OutboxAttempt.outbox_id == row.id,
            OutboxAttempt.number == row.attempts,
            OutboxAttempt.outcome == "running",
        )
    ).first()


def interrupt(session: Session, row: OutboxMessage, now: datetime, max_attempts: int) -> None:
    """The try holding `row` outlived its lease, so its process died: decide what happens.

    Died before the hand-off: nothing left the building, the row goes back to pending (or to
    failed if that was the last try). Died after it: the email may have arrived, so the row ends
    as `unknown` and is not resent by itself (at most once); `leadsvc outbox retry ID` resends it.
    A webhook carries a delivery id the dealer deduplicates on, so it is retried either way.
    """
    attempt = running_attempt(session, row)
    number = row.attempts
    if row.status == HANDED_OFF and not is_idempotent(row.kind):
        row.status = UNKNOWN
        row.last_error = (
            f"try {number} died after handing the message over; it may have arrived, so it is "
            "not resent (`leadsvc outbox retry` sends it again)"
        )
        outcome = UNKNOWN
    else:
        row.status = FAILED if number >= max_attempts else PENDING
        row.last_error = f"try {number} died before finishing (worker lost)"
        row.next_attempt_at = now
        outcome = "interrupted"
    row.lease_until = None
    row.updated_at = now
    if attempt is not None:
        attempt.outcome = outcome
        attempt.finished_at = now
        attempt.error = row.last_error[:500]


def reclaim_expired(session: Session, max_attempts: int) -> dict[int, str]:
    """Settle every try whose lease ran out (see `interrupt`); commits.

    Returns each such row's id and new status: pending (under its next job generation),
    unknown, or failed.
    """
    now = utcnow()
    expired = session.scalars(
        sa.select(OutboxMessage.id).where(
            OutboxMessage.status.in_(IN_FLIGHT), OutboxMessage.lease_until < now
        )
    ).all()
    settled = {}
    for outbox_id in expired:
        row = lock_message(session, outbox_id)
        if row is not None and row.status in IN_FLIGHT and row.lease_until < now:
            interrupt(session, row, now, max_attempts)
            if row.status == PENDING:
                row.generation += 1
                row.job_id = None
            settled[row.id] = row.status
        session.commit()
    return settled


def due_waiting(session: Session, limit: int = 500, after_id: int = 0) -> list[OutboxMessage]:
    """Rows waiting for a try whose time has come, oldest first (the in-process drainer's)."""
    return list(
        session.scalars(
            sa.select(OutboxMessage)
            .where(OutboxMessage.status.in_(WAITING), OutboxMessage.id > after_id, is_due())
            .order_by(OutboxMessage.id)
            .limit(limit)
        )
    )


def is_due():
    """The rows whose next try's time has come (or was never set)."""
    return sa.or_(
        OutboxMessage.next_attempt_at.is_(None), OutboxMessage.next_attempt_at <= utcnow()
    )


def skip_open_messages(
    session: Session, lead_id: int, reason: str, kinds: Iterable[str] = KINDS
) -> int:
    """Mark the lead's pending rows skipped (the person unsubscribed); in the caller's transaction.

    Rows already being sent are left to their try, which checks the lead again before sending.
    """
    result = session.execute(
        sa.update(OutboxMessage)
        .where(
            OutboxMessage.lead_id == lead_id,
            OutboxMessage.status.in_(WAITING),
            OutboxMessage.kind.in_(list(kinds)),
        )
        .values(status=SKIPPED, last_error=reason, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0


class NotRetryable(ValueError):
    """The row cannot be retried (sent, skipped, or still in flight)."""


def retry_message(session: Session, outbox_id: int) -> OutboxMessage:
    """Send a failed or unknown row again with a fresh set of tries; dispatched after commit."""
    row = lock_message(session, outbox_id)
    if row is None:
        raise LookupError(f"no outbox row {outbox_id}")
    if row.status not in (FAILED, UNKNOWN, *WAITING):
        raise NotRetryable(
            f"outbox row {outbox_id} is {row.status}; only failed or unknown rows are retried"
        )
    now = utcnow()
    row.status = PENDING
    row.attempts = 0
    row.next_attempt_at = None
    row.lease_until = None
    row.generation += 1
    row.updated_at = now
    _note_for_dispatch(session, row)
    return row


def failed_ids(session: Session) -> list[int]:
    query = sa.select(OutboxMessage.id).where(OutboxMessage.status == FAILED)
    return list(session.scalars(query.order_by(OutboxMessage.id)))


@dataclass(frozen=True)
class OutboxStatus:
    counts: dict[tuple[str, str], int]
    oldest_open_seconds: float | None
    oldest_open_id: int | None


def outbox_status(session: Session) -> OutboxStatus:
    """Counts by kind and status, and how long the oldest row not yet final has waited."""
    counts = {
        (kind, status): count
        for kind, status, count in session.execute(
            sa.select(OutboxMessage.kind, OutboxMessage.status, sa.func.count()).group_by(
                OutboxMessage.kind, OutboxMessage.status
            )
        )
    }
    oldest = session.execute(
        sa.select(OutboxMessage.id, OutboxMessage.created_at)
        .where(OutboxMessage.status.in_(OPEN))
        .order_by(OutboxMessage.created_at, OutboxMessage.id)
        .limit(1)
    ).first()
    age = (utcnow() - oldest.created_at).total_seconds() if oldest else None
    return OutboxStatus(counts, age, oldest.id if oldest else None)
