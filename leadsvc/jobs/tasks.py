"""The rq job: deliver a batch of outbox rows. It takes the rows' ids and opens its own sessions.

One run of `deliver_batch`, the same on PostgreSQL and SQLite, for the rq worker (a batch) and
the in-process drainer (one row at a time, `run_delivery`) alike:

1. claim (`leadsvc.jobs.claims`): the batch's waiting rows are made this try's in one
   transaction; a row that is final, or held by another try's live claim, gets a `duplicate`
   attempt and is not sent (a job delivered twice never sends twice). The kind's sender
   prepares each message from the lead and dealer as they are now (or says to skip it); each
   try is counted, each row marked `sending` with a lease, a `running` attempt recorded, and
   all of it committed before anything leaves the process;
2. hand off (emails): just before the point of no return (the final "." of SMTP DATA, the
   rename of the .eml file) the row is marked `handed_off` if the claim is still this try's (one
   conditional UPDATE, committed). A try that lost its claim (it ran past its lease and another
   took over) stops here without sending. A webhook needs no hand-off: the dealer deduplicates
   on its delivery id, so sending it again is harmless;
3. finish: `sent` (the batch's sent rows together, at its end); or, for a
   definite failure, back to pending with the next try's time (the dispatcher or the drainer
   hands it on when it comes) or `failed` when the tries are used up or the failure is
   permanent; or `unknown` when the connection broke after an email's hand-off (it may have
   arrived: never resent by itself). The job fails at the end so rq records the failure too.

A process that dies mid-try leaves the row `sending` or `handed_off`; when the lease has run out
the relay (or the next run of this job) decides as `leadsvc.outbox.messages.interrupt` says.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from flask import Flask, current_app
from rq import get_current_job
from sqlalchemy.orm import Session

from leadsvc.db import utcnow
from leadsvc.extensions import db
from leadsvc.jobs.claims import Claim, claim_rows
from leadsvc.ops.logs import redact
from leadsvc.outbox.kinds import (
    Connections,
    DeliveryError,
    UncertainDelivery,
    is_idempotent,
    kind_of,
)
from leadsvc.outbox.messages import (
    FAILED,
    HANDED_OFF,
    IN_FLIGHT,
    PENDING,
    SENDING,
    SENT,
    UNKNOWN,
    lock_message,
    retry_delay,
)
from leadsvc.outbox.models import OutboxAttempt, OutboxMessage

log = logging.getLogger(__name__)

IN_PROCESS = "in-process"


class LostClaim(Exception):
    """This try ran past its lease and another took the row over: it must not send."""


class RowsFailed(Exception):
    """Some rows of a batch failed this try (each is recorded on its row and will be retried
    by the outbox when its next try is due); raised so that rq records the job as failed."""


def deliver_rows(outbox_ids: list[int]) -> dict[str, int]:
    """The rq job function: deliver a batch of rows (the worker runs it in the app context).

    Each row is its own try, sent and recorded on its own, so one row's failure does not hold
    back the others; the job fails at the end if any row failed."""
    job = get_current_job()
    app = current_app._get_current_object()
    outcomes, errors = deliver_batch(app, outbox_ids, runner=job.id if job else IN_PROCESS)
    if errors:
        failed = sorted(errors)
        raise RowsFailed(f"{len(failed)} of {len(outbox_ids)} rows failed: {failed}")
    counts: dict[str, int] = {}
    for outcome in outcomes.values():
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def deliver(outbox_id: int) -> dict[str, int]:
    """A one-row job (the form rq jobs had before rows went in batches)."""
    return deliver_rows([outbox_id])


def run_delivery(app: Flask, outbox_id: int, runner: str = IN_PROCESS) -> str:
    """Deliver one outbox row at most once per try; returns the outcome, raises on failure."""
    outcomes, errors = deliver_batch(app, [outbox_id], runner)
    if errors:
        raise errors[outbox_id]
    return outcomes[outbox_id]


def deliver_batch(
    app: Flask, outbox_ids: list[int], runner: str
) -> tuple[dict[int, str], dict[int, Exception]]:
    """Claim the rows in one transaction, then send each; returns each row's outcome and the
    error of each row that failed (already recorded on the row and logged).

    An email is handed off on its own just before it leaves (at most once) and recorded `sent`
    as soon as the server took it, so a process that dies leaves at most the one email it was
    sending `handed_off` (settled as `unknown`, never resent by itself). A webhook, which the
    dealer deduplicates on its delivery id, needs no hand-off: the batch's webhooks are recorded
    `sent` together at its end, and a process that dies before that sends them again."""
    settings = app.config["LEADSVC_SETTINGS"]
    sessions = db.sessionmaker(app)
    with app.app_context(), sessions() as session:  # the email templates need the app
        claims = claim_rows(session, settings, outbox_ids, runner)
    engine = db.engine(app)
    outcomes: dict[int, str] = {}
    errors: dict[int, Exception] = {}
    sent_together: list[Claim] = []
    # The batch's messages share their connections (one SMTP session), closed after the sent
    # rows are recorded.
    with Connections() as connections:
        try:
            for outbox_id, claim in zip(outbox_ids, claims, strict=True):
                if not isinstance(claim, Claim):
                    log.info("outbox %d: %s, nothing sent", outbox_id, claim)
                    outcomes[outbox_id] = claim
                    continue
                try:
                    _send(settings, engine, claim, connections)
                except Exception as error:  # recorded, then reported to rq (or the drainer)
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
                    outcomes[outbox_id], errors[outbox_id] = "failed", error
                    continue
                if is_idempotent(claim.kind):
                    sent_together.append(claim)
                else:
                    _record_sent(engine, [claim])
                log.info("outbox %d %s: sent on try %d", outbox_id, claim.kind, claim.number)
                outcomes[outbox_id] = SENT
        finally:
            if sent_together:
                _record_sent(engine, sent_together)
    return outcomes, errors


def _send(settings, engine: sa.Engine, claim: Claim, connections: Connections) -> None:
    """Transmit the claimed message on the batch's `connections`; unless the kind is
    idempotent, mark the row handed off (if the claim is still this try's) just before the
    point of no return."""
    handed_off = not is_idempotent(claim.kind)

    def hand_off() -> None:
        if not handed_off:
            return
        with _autocommit(engine) as connection:  # one statement: its own transaction
            moved = connection.execute(_HAND_OFF, _values(claim)).rowcount
        if moved != 1:
            raise LostClaim(f"try {claim.number} lost its claim on outbox {claim.outbox_id}")

    if isinstance(claim.outgoing, Exception):
        raise claim.outgoing
    kind_of(claim.kind).transmit(settings, claim.outgoing, hand_off, connections)


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


def _record_sent(engine: sa.Engine, claims: list[Claim]) -> None:
    """The tries and their rows are sent, in one transaction."""
    values = [_values(claim) for claim in claims]
    with engine.begin() as connection:
        connection.execute(_ATTEMPT_SENT, values)
        connection.execute(_ROW_SENT, values)


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
