"""Claims: the rows of a batch made this try's, with their messages prepared, before anything
is sent.

`claim_rows` takes a whole batch in one transaction: one UPDATE makes every waiting row of it
`sending` (taking the rows' locks and counting their tries), each kind's sender prepares its
message from the lead and dealer as they are now, one INSERT records a `running` attempt per row,
and one commit ends it. A row whose message must not go out any more is `skipped` in the same
transaction. A row that was not waiting (in flight, final, missing) is looked at on its own,
locked (`_claim_locked`): a duplicate run records a `duplicate` attempt and sends nothing.

The lease of a batch's rows covers the whole batch (the job's timeout is the row timeout times
the rows), so a row claimed first but sent last is still this try's when its turn comes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from leadsvc.db import utcnow
from leadsvc.outbox.kinds import Outgoing, RowRef, Skip, kind_of
from leadsvc.outbox.messages import (
    FINAL,
    IN_FLIGHT,
    SENDING,
    SKIPPED,
    WAITING,
    interrupt,
    lease_until,
    lock_message,
)
from leadsvc.outbox.models import OutboxAttempt, OutboxMessage


@dataclass(frozen=True)
class Claim:
    outbox_id: int
    kind: str
    number: int
    attempt_id: int
    #: The prepared message, or the error that preparing it raised (recorded as the try's).
    outgoing: Any


_OUTBOX = OutboxMessage.__table__
_ATTEMPTS = OutboxAttempt.__table__

#: Waiting rows become this try's: the UPDATE takes the rows' locks and counts their tries.
_CLAIM_WAITING = (
    sa.update(_OUTBOX)
    .where(
        _OUTBOX.c.id.in_(sa.bindparam("ids", expanding=True)),
        _OUTBOX.c.status.in_(WAITING),
    )
    .values(
        status=SENDING,
        attempts=_OUTBOX.c.attempts + 1,
        lease_until=sa.bindparam("lease"),
        next_attempt_at=None,
        updated_at=sa.bindparam("now"),
    )
    .returning(
        _OUTBOX.c.id, _OUTBOX.c.kind, _OUTBOX.c.lead_id, _OUTBOX.c.dealer_id, _OUTBOX.c.attempts
    )
)
_INSERT_ATTEMPTS = sa.insert(_ATTEMPTS).returning(_ATTEMPTS.c.id, sort_by_parameter_order=True)


def claim_rows(session: Session, settings, outbox_ids: list[int], runner: str) -> list[Any]:
    """Claim a batch and commit; for each id, in order, its `Claim` or why nothing is to be
    sent (`skipped`, `duplicate`, `missing`, or the status an expired earlier try left)."""
    now = utcnow()
    lease = lease_until(now, settings.job_timeout * len(outbox_ids))
    claimed = session.execute(_CLAIM_WAITING, {"ids": outbox_ids, "lease": lease, "now": now})
    rows = sorted(claimed.all(), key=lambda row: row.id)
    refs = [RowRef(row.id, row.kind, row.lead_id, row.dealer_id) for row in rows]
    loaded = _preload(session, refs)  # noqa: F841 (kept while preparing)
    prepared: dict[int, tuple[Any, Any]] = {}
    skipped: set[int] = set()
    for row, ref in zip(rows, refs, strict=True):
        outgoing = _prepare(settings, session, ref)
        if isinstance(outgoing, Skip):
            skip_row(session, row.id, outgoing, runner, now, undo_try=True)
            skipped.add(row.id)
        else:
            prepared[row.id] = (row, outgoing)
    claims: dict[int, Claim] = {}
    if prepared:
        attempt_ids = session.scalars(
            _INSERT_ATTEMPTS,
            [
                {
                    "outbox_id": row.id,
                    "number": row.attempts,
                    "runner": runner[:64],
                    "outcome": "running",
                    "started_at": now,
                }
                for row, _ in prepared.values()
            ],
        ).all()
        for (row, outgoing), attempt_id in zip(prepared.values(), attempt_ids, strict=True):
            claims[row.id] = Claim(row.id, row.kind, row.attempts, attempt_id, outgoing)
        _keep_message_ids(session, [outgoing for _, outgoing in prepared.values()])
    session.commit()
    results: list[Any] = []
    for outbox_id in outbox_ids:
        if outbox_id in claims:
            results.append(claims[outbox_id])
        elif outbox_id in skipped:
            results.append(SKIPPED)
        else:
            claim, outcome = _claim_locked(session, settings, outbox_id, runner)
            results.append(claim or outcome)
    return results


def _preload(session: Session, refs: list[RowRef]) -> list:
    """What the kinds' `prepare` will read for these rows, loaded a query per table."""
    by_preload: dict[Any, list[RowRef]] = {}
    for ref in refs:
        preload = kind_of(ref.kind).preload
        if preload is not None:
            by_preload.setdefault(preload, []).append(ref)
    return [preload(session, batch) for preload, batch in by_preload.items()]


_MESSAGE_ID = (
    sa.update(_OUTBOX)
    .where(_OUTBOX.c.id == sa.bindparam("row_id"))
    .values(message_id=sa.bindparam("message_id"))
)


def _keep_message_ids(session: Session, prepared: list[Any]) -> None:
    """Store the emails' Message-IDs on their rows, in the claim's transaction: a bounce or a
    complaint that quotes one finds its row."""
    values = [
        {"row_id": outgoing.outbox_id, "message_id": outgoing.message_id[:255]}
        for outgoing in prepared
        if isinstance(outgoing, Outgoing) and outgoing.message_id
    ]
    if values:
        session.connection().execute(_MESSAGE_ID, values)


def _prepare(settings, session: Session, ref: RowRef) -> Any:
    """The kind's message for the row, a `Skip`, or the (non-database) error preparing raised."""
    try:
        return kind_of(ref.kind).prepare(settings, session, ref)
    except SQLAlchemyError:
        raise
    except Exception as error:  # recorded as this try's failure once the claim is committed
        return error


def skip_row(
    session: Session, outbox_id: int, skip: Skip, runner: str, now: datetime, *, undo_try: bool
) -> None:
    """The row is not to be sent: `skipped` with its reason, a `suppressed` attempt, and what the
    sender asked for instead (`skip.then`), in the caller's transaction. `undo_try`: the row's
    try was already counted by its claim."""
    session.flush()  # an expired try's settlement first: the UPDATE below has the last word
    values: dict[str, Any] = {
        "status": SKIPPED,
        "last_error": skip.reason[:500],
        "lease_until": None,
        "updated_at": now,
    }
    if undo_try:
        values["attempts"] = _OUTBOX.c.attempts - 1
    session.execute(sa.update(_OUTBOX).where(_OUTBOX.c.id == outbox_id).values(**values))
    _attempt(session, outbox_id, runner, "suppressed", skip.reason)
    if skip.then is not None:
        skip.then(session)


def _attempt(
    session: Session,
    outbox_id: int,
    runner: str,
    outcome: str,
    error: str | None,
    number: int | None = None,
) -> OutboxAttempt:
    now = utcnow()
    attempt = OutboxAttempt(
        outbox_id=outbox_id,
        number=number,
        runner=runner[:64],
        outcome=outcome,
        error=error[:500] if error else None,
        started_at=now,
        finished_at=None if outcome == "running" else now,
    )
    session.add(attempt)
    return attempt


def _claim_locked(
    session: Session, settings, outbox_id: int, runner: str
) -> tuple[Claim | None, str]:
    """The row locked and looked at: a duplicate, an expired try, a row not to be sent."""
    now = utcnow()
    row = lock_message(session, outbox_id)
    if row is None:
        session.rollback()
        return None, "missing"
    if row.status in IN_FLIGHT:
        if row.lease_until is not None and row.lease_until > now:
            _attempt(session, row.id, runner, "duplicate", f"try {row.attempts} is in flight")
            session.commit()
            return None, "duplicate"
        interrupt(session, row, now, settings.max_attempts)
        if row.status not in WAITING:
            session.commit()
            return None, row.status
    elif row.status in FINAL:
        _attempt(session, row.id, runner, "duplicate", f"already {row.status}")
        session.commit()
        return None, "duplicate"
    ref = RowRef(row.id, row.kind, row.lead_id, row.dealer_id)
    loaded = _preload(session, [ref])  # noqa: F841 (kept while preparing)
    prepared = _prepare(settings, session, ref)
    if isinstance(prepared, Skip):
        skip_row(session, row.id, prepared, runner, now, undo_try=False)
        session.commit()
        return None, SKIPPED
    row.attempts += 1
    row.status, row.next_attempt_at, row.updated_at = SENDING, None, now
    row.lease_until = lease_until(now, settings.job_timeout)
    attempt = _attempt(session, row.id, runner, "running", None, number=row.attempts)
    session.flush()
    _keep_message_ids(session, [prepared])
    claim = Claim(row.id, row.kind, row.attempts, attempt.id, prepared)
    session.commit()
    return claim, SENDING
