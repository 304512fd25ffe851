"""The rq job: deliver one outbox row. It takes the row's id and opens its own sessions.

One run of `run_delivery`, the same on PostgreSQL and SQLite, for the rq worker and the
in-process drainer alike:

1. claim: lock the row; if it is final, or another try holds a live claim, record a
   `duplicate` attempt and stop (a job delivered twice never sends twice). Otherwise the kind's
   sender prepares the message from the lead and dealer as they are now (or says to skip it);
   the try is counted, the row marked `sending` with a lease (job timeout + margin), a `running`
   attempt recorded, and all of it committed before anything leaves the process;
2. hand off: just before the point of no return (the final "." of SMTP DATA, the rename of the
   .eml file, the webhook request) the row is marked `handed_off` if the claim is still this
   try's (one conditional UPDATE, committed). A try that lost its claim (it ran past its lease
   and another took over) stops here without sending;
3. finish: `sent`; or, for a definite failure, back to pending with the next try's time (the
   dispatcher or the drainer hands it on when it comes) or `failed` when the tries are used up or
   the failure is
   permanent; or `unknown` when the connection broke after the hand-off (the email may have
   arrived: never resent by itself). The exception is re-raised so rq records the failure too.

A process that dies mid-try leaves the row `sending` or `handed_off`; when the lease has run out
the relay (or the next run of this job) decides as `leadsvc.outbox.messages.interrupt` says.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from flask import Flask, current_app
from rq import get_current_job
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from leadsvc.db import utcnow
from leadsvc.extensions import db
from leadsvc.ops.logs import redact
from leadsvc.outbox.kinds import (
    DeliveryError,
    RowRef,
    Skip,
    UncertainDelivery,
    is_idempotent,
    kind_of,
)
from leadsvc.outbox.messages import (
    FAILED,
    FINAL,
    HANDED_OFF,
    IN_FLIGHT,
    PENDING,
    SENDING,
    SENT,
    SKIPPED,
    UNKNOWN,
    WAITING,
    interrupt,
    lease_until,
    lock_message,
    retry_delay,
)
from leadsvc.outbox.models import OutboxAttempt, OutboxMessage

log = logging.getLogger(__name__)

IN_PROCESS = "in-process"


class LostClaim(Exception):
    """This try ran past its lease and another took the row over: it must not send."""


@dataclass(frozen=True)
class Claim:
    outbox_id: int
    kind: str
    number: int
    attempt_id: int
    #: The prepared message, or the error that preparing it raised (recorded as the try's).
    outgoing: Any


class RowsFailed(Exception):
    """Some rows of a batch failed this try (each is recorded on its row and will be retried
    by the outbox when its next try is due); raised so that rq records the job as failed."""


def deliver_rows(outbox_ids: list[int]) -> dict[str, int]:
    """The rq job function: deliver a batch of rows (the worker runs it in the app context).

    Each row is its own try, claimed, sent and recorded on its own, so one row's failure does
    not hold back the others; the job fails at the end if any row failed."""
    job = get_current_job()
    app = current_app._get_current_object()
    runner = job.id if job else IN_PROCESS
    outcomes: dict[str, int] = {}
    failed = []
    for outbox_id in outbox_ids:
        try:
            outcome = run_delivery(app, outbox_id, runner=runner)
        except Exception:  # recorded on the row and logged by run_delivery; the job fails below
            failed.append(outbox_id)
            outcome = "failed"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    if failed:
        raise RowsFailed(f"{len(failed)} of {len(outbox_ids)} rows failed: {failed}")
    return outcomes


def deliver(outbox_id: int) -> dict[str, int]:
    """A one-row job (the form rq jobs had before rows went in batches)."""
    return deliver_rows([outbox_id])


def run_delivery(app: Flask, outbox_id: int, runner: str = IN_PROCESS) -> str:
    """Deliver one outbox row at most once per try; returns the outcome, raises on failure."""
    settings = app.config["LEADSVC_SETTINGS"]
    sessions = db.sessionmaker(app)
    with app.app_context(), sessions() as session:  # the email templates need the app
        claim, outcome = _claim(session, settings, outbox_id, runner)
    if claim is None:
        log.info("outbox %d: %s, nothing sent", outbox_id, outcome)
        return outcome
    engine = db.engine(app)

    def handed_off() -> None:
        with _autocommit(engine) as connection:  # one statement: its own transaction
            moved = connection.execute(_HAND_OFF, _values(claim)).rowcount
        if moved != 1:
            raise LostClaim(f"try {claim.number} lost its claim on outbox {claim.outbox_id}")

    try:
        if isinstance(claim.outgoing, Exception):
            raise claim.outgoing
        kind_of(claim.kind).transmit(settings, claim.outgoing, handed_off)
    except Exception as error:  # recorded, then re-raised for rq (or the drainer) to see
        with sessions() as session:
            status = _record_failure(session, settings, claim, error, runner)
        log.warning(
            "outbox %d %s: try %d %s: %s",
            claim.outbox_id,
            claim.kind,
            claim.number,
            status,
            _describe(error),
        )
        raise
    _record_sent(engine, claim)
    log.info("outbox %d %s: sent on try %d", claim.outbox_id, claim.kind, claim.number)
    return SENT


_OUTBOX = OutboxMessage.__table__
_ATTEMPTS = OutboxAttempt.__table__
#: The hand-off: the row is still this try's (`sending`, its try number), and now handed over.
_HAND_OFF = (
    sa.update(_OUTBOX)
    .where(
        _OUTBOX.c.id == sa.bindparam("outbox_id"),
        _OUTBOX.c.status == SENDING,
        _OUTBOX.c.attempts == sa.bindparam("number"),
    )
    .values(status=HANDED_OFF, updated_at=sa.bindparam("now"))
)
_ATTEMPT_SENT = (
    sa.update(_ATTEMPTS)
    .where(_ATTEMPTS.c.id == sa.bindparam("attempt_id"))
    .values(outcome=SENT, finished_at=sa.bindparam("now"))
)
#: A success wins even over a takeover: the row that was put back is not sent again.
_ROW_SENT = (
    sa.update(_OUTBOX)
    .where(_OUTBOX.c.id == sa.bindparam("outbox_id"), _OUTBOX.c.status != SENT)
    .values(
        status=SENT,
        sent_at=sa.bindparam("now"),
        lease_until=None,
        last_error=None,
        updated_at=sa.bindparam("now"),
    )
)


#: A waiting row becomes this try's: the UPDATE takes the row's lock and counts the try.
_CLAIM_WAITING = (
    sa.update(_OUTBOX)
    .where(_OUTBOX.c.id == sa.bindparam("outbox_id"), _OUTBOX.c.status.in_(WAITING))
    .values(
        status=SENDING,
        attempts=_OUTBOX.c.attempts + 1,
        lease_until=sa.bindparam("lease"),
        next_attempt_at=None,
        updated_at=sa.bindparam("now"),
    )
    .returning(_OUTBOX.c.kind, _OUTBOX.c.lead_id, _OUTBOX.c.dealer_id, _OUTBOX.c.attempts)
)
_INSERT_ATTEMPT = sa.insert(_ATTEMPTS).returning(_ATTEMPTS.c.id)


def _autocommit(engine: sa.Engine) -> sa.Connection:
    """A connection on which each statement is its own transaction (no BEGIN, no COMMIT)."""
    return engine.connect().execution_options(isolation_level="AUTOCOMMIT")


def _values(claim: Claim) -> dict:
    return {
        "outbox_id": claim.outbox_id,
        "number": claim.number,
        "attempt_id": claim.attempt_id,
        "now": utcnow(),
    }


def _record_sent(engine: sa.Engine, claim: Claim) -> None:
    """The try and the row are sent, in one transaction."""
    with engine.begin() as connection:
        connection.execute(_ATTEMPT_SENT, _values(claim))
        connection.execute(_ROW_SENT, _values(claim))


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


def _claim(session: Session, settings, outbox_id: int, runner: str) -> tuple[Claim | None, str]:
    """Make the row this try's, with its message prepared, and commit; or say why not.

    The usual case, a waiting row whose message may go out, is three statements: the claim
    (an UPDATE that takes the row's lock), the message's reads, the attempt. Anything else
    (a row in flight, final, or not to be sent) is decided by `_claim_locked`."""
    now = utcnow()
    claimed = session.execute(
        _CLAIM_WAITING,
        {
            "outbox_id": outbox_id,
            "lease": lease_until(now, settings.job_timeout),
            "now": now,
        },
    ).first()
    if claimed is not None:
        ref = RowRef(outbox_id, claimed.kind, claimed.lead_id, claimed.dealer_id)
        try:
            prepared = kind_of(ref.kind).prepare(settings, session, ref)
        except SQLAlchemyError:
            raise
        except Exception as error:  # recorded as this try's failure once the claim is committed
            prepared = error
        if not isinstance(prepared, Skip):
            attempt_id = session.execute(
                _INSERT_ATTEMPT,
                {
                    "outbox_id": outbox_id,
                    "number": claimed.attempts,
                    "runner": runner[:64],
                    "outcome": "running",
                    "started_at": now,
                },
            ).scalar_one()
            session.commit()
            return Claim(outbox_id, ref.kind, claimed.attempts, attempt_id, prepared), SENDING
        session.rollback()  # not to be sent: decided below, with the row locked as it was
    return _claim_locked(session, settings, outbox_id, runner)


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
    try:
        prepared = kind_of(row.kind).prepare(settings, session, ref)
    except SQLAlchemyError:
        raise
    except Exception as error:  # recorded as this try's failure once the claim is committed
        prepared = error
    if isinstance(prepared, Skip):
        row.status, row.last_error, row.updated_at = SKIPPED, prepared.reason, now
        _attempt(session, row.id, runner, "suppressed", prepared.reason)
        if prepared.then is not None:
            prepared.then(session)
        session.commit()
        return None, SKIPPED
    row.attempts += 1
    row.status, row.next_attempt_at, row.updated_at = SENDING, None, now
    row.lease_until = lease_until(now, settings.job_timeout)
    attempt = _attempt(session, row.id, runner, "running", None, number=row.attempts)
    session.flush()
    claim = Claim(row.id, row.kind, row.attempts, attempt.id, prepared)
    session.commit()
    return claim, SENDING


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {redact(str(error))}"[:500]


def _record_failure(session: Session, settings, claim: Claim, error: Exception, runner: str) -> str:
    now = utcnow()
    row = lock_message(session, claim.outbox_id)
    attempt = session.get(OutboxAttempt, claim.attempt_id, populate_existing=True)
    message = _describe(error)
    attempt.finished_at, attempt.error = now, message
    if row is None or row.status not in IN_FLIGHT or row.attempts != claim.number:
        attempt.outcome = "interrupted"  # the row was taken over; its state is not ours to set
        session.commit()
        return "interrupted"
    uncertain = isinstance(error, UncertainDelivery) or (
        row.status == HANDED_OFF and not isinstance(error, DeliveryError)
    )
    if uncertain and not is_idempotent(row.kind):
        row.status = attempt.outcome = UNKNOWN
    else:
        attempt.outcome = "failed"
        if getattr(error, "permanent", False) or row.attempts >= settings.max_attempts:
            row.status = FAILED
        else:  # the dispatcher (or the drainer) hands it on again when its next try is due
            row.status, row.job_id = PENDING, None
            row.next_attempt_at = now + retry_delay(settings.job_retry_intervals, row.attempts)
    row.lease_until, row.last_error, row.updated_at = None, message, now
    session.commit()
    return row.status
