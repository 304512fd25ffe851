"""The rq job: deliver one outbox row. It takes the row's id and opens its own sessions.

One run of `run_delivery`:

1. claim: lock the row; if it is final, or another try holds a live claim, record a
   `duplicate` attempt and stop (a job delivered twice never sends twice). Otherwise count the
   try, mark the row `sending` with a lease (job timeout + margin) and record a `running`
   attempt. On PostgreSQL the usual case (a pending row that may be sent) takes two statements
   and no transaction: read the row with its lead and dealer, then claim it and record the
   attempt in one statement (`_claim_at_once`); anything else goes the locked way;
2. build the email or webhook from the lead and dealer as they are now, in the claim's
   transaction, and commit before anything leaves the process.
3. hand off: just before the point of no return (the final "." of SMTP DATA, the rename of the
   .eml file, the webhook request) mark the row `handed_off` if the claim is still this try's
   (one conditional UPDATE), committed. A try that lost its claim (it ran past its lease and another
   took over) stops here without sending.
4. finish: `sent`; or, for a definite failure, back to `pending` with the next try's time
   (rq's Retry runs it) or `failed` when the tries are used up or the failure is permanent; or
   `unknown` when the connection broke after the hand-off (the email may have arrived: never
   resent by itself). The exception is re-raised so rq records the failure too.

A process that dies mid-try leaves the row `sending` or `handed_off`; when the lease has run out
the relay (or the next run of this job) decides as `leadsvc.jobs.outbox.interrupt` describes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import sqlalchemy as sa
from flask import Flask, current_app
from rq import get_current_job
from sqlalchemy.orm import Session, aliased

from leadsvc.db import UTCDateTime, utcnow
from leadsvc.dealers.models import Dealer
from leadsvc.extensions import db
from leadsvc.held_connection import run_held
from leadsvc.jobs.models import OutboxAttempt, OutboxMessage
from leadsvc.jobs.outbox import (
    DEALER_KINDS,
    DEALER_WEBHOOK,
    FAILED,
    FINAL,
    HANDED_OFF,
    IN_FLIGHT,
    PENDING,
    SENDING,
    SENT,
    SKIPPED,
    UNKNOWN,
    interrupt,
    lease_until,
    lock_message,
    retry_delay,
)
from leadsvc.outbound.delivery import build, skip_reason, transmit
from leadsvc.outbound.mail import DeliveryError, UncertainDelivery, redact
from leadsvc.outbound.subscription import notify_dealer
from leadsvc.signups.models import Lead

log = logging.getLogger(__name__)

IN_PROCESS = "in-process"


class LostClaim(Exception):
    """This try ran past its lease and another took the row over: it must not send."""


@dataclass(frozen=True)
class Claim:
    outbox_id: int
    kind: str
    lead_id: int
    dealer_id: int | None
    number: int
    attempt_id: int
    #: The lead and dealer loaded with the claim. Held here because the session's identity map
    #: holds objects weakly: without a reference, building the message would load them again.
    loaded: tuple = field(default=(), compare=False, repr=False)


def deliver(outbox_id: int) -> str:
    """The rq job function (the worker runs it inside the app context)."""
    job = get_current_job()
    return run_delivery(current_app._get_current_object(), outbox_id,
                        runner=job.id if job else IN_PROCESS)  # fmt: skip


def run_delivery(app: Flask, outbox_id: int, runner: str = IN_PROCESS) -> str:
    """Deliver one outbox row at most once per try; returns the outcome, raises on failure."""
    settings = app.config["LEADSVC_SETTINGS"]
    sessions = db.sessionmaker(app)
    engine = db.engine(app)
    outgoing, build_error = None, None
    with app.app_context(), sessions() as session:  # the email templates need the app
        claim, outcome = None, None
        if engine.dialect.name == "postgresql":
            claim = _claim_at_once(session, settings, outbox_id, runner)
            if claim is None:
                session.commit()  # gives the autocommit connection back (nothing to commit)
        if claim is None:
            claim, outcome = _claim(session, settings, outbox_id, runner)
        if claim is not None:
            # Built in the claim's transaction (the lead is already loaded and locked rows are
            # few): nothing leaves the process before the commit below.
            try:
                outgoing = build(settings, session, claim.outbox_id, claim.kind, claim.lead_id,
                                 claim.dealer_id)  # fmt: skip
            except Exception as error:  # recorded below, once the claim is committed
                build_error = error
        session.commit()
    if claim is None:
        log.info("outbox %d: %s, nothing sent", outbox_id, outcome)
        return outcome

    def handed_off() -> None:
        moved = _autocommitted(engine, _HAND_OFF, _HAND_OFF_SQL, {
            "outbox_id": claim.outbox_id, "number": claim.number, "now": utcnow(),
        })  # fmt: skip
        if moved != 1:
            raise LostClaim(f"try {claim.number} lost its claim on outbox {claim.outbox_id}")

    try:
        if build_error is not None:
            raise build_error
        transmit(settings, outgoing, handed_off)
    except Exception as error:  # recorded, then re-raised for rq (or the drainer) to see
        with sessions() as session:
            status = _record_failure(session, settings, claim, error)
        log.warning("outbox %d %s: try %d %s: %s", claim.outbox_id, claim.kind, claim.number,
                    status, _describe(error))  # fmt: skip
        raise
    _record_sent(engine, claim)
    log.info("outbox %d %s: sent on try %d", claim.outbox_id, claim.kind, claim.number)
    return SENT


def _attempt(session: Session, outbox_id: int, runner: str, outcome: str, error: str | None,
             number: int | None = None) -> OutboxAttempt:  # fmt: skip
    now = utcnow()
    attempt = OutboxAttempt(
        outbox_id=outbox_id, number=number, runner=runner[:64], outcome=outcome,
        error=error[:500] if error else None, started_at=now,
        finished_at=None if outcome == "running" else now,
    )  # fmt: skip
    session.add(attempt)
    return attempt


_OUTBOX = OutboxMessage.__table__
_ATTEMPTS = OutboxAttempt.__table__
#: The usual case in one statement: a pending row becomes this try's (the row lock is taken by
#: the UPDATE itself; a row in any other state is left to `_claim_locked`).
_CLAIM_PENDING = (
    sa.update(_OUTBOX)
    .where(_OUTBOX.c.id == sa.bindparam("outbox_id"), _OUTBOX.c.status == PENDING)
    .values(
        status=SENDING, attempts=_OUTBOX.c.attempts + 1, lease_until=sa.bindparam("lease"),
        next_attempt_at=None, updated_at=sa.bindparam("now"),
    )  # fmt: skip
    .returning(_OUTBOX.c.kind, _OUTBOX.c.lead_id, _OUTBOX.c.dealer_id, _OUTBOX.c.attempts)
)
_INSERT_ATTEMPT = sa.insert(_ATTEMPTS).returning(_ATTEMPTS.c.id)


_DEALER = aliased(Dealer)
#: The lead (fresh from the database) and the dealer the message is for, or the lead's own.
_LEAD_AND_DEALER = (
    sa.select(Lead, _DEALER)
    .outerjoin(_DEALER, _DEALER.id == sa.func.coalesce(sa.bindparam("dealer_id", type_=sa.Integer),
                                                       Lead.dealer_id))
    .where(Lead.id == sa.bindparam("lead_id"))
    .execution_options(populate_existing=True)
)  # fmt: skip
#: The hand-off: the row is still this try's (`sending`, its try number), and now handed over.
_HAND_OFF = (
    sa.update(_OUTBOX)
    .where(_OUTBOX.c.id == sa.bindparam("outbox_id"), _OUTBOX.c.status == SENDING,
           _OUTBOX.c.attempts == sa.bindparam("number"))
    .values(status=HANDED_OFF, updated_at=sa.bindparam("now"))
)  # fmt: skip
_ATTEMPT_SENT = (
    sa.update(_ATTEMPTS).where(_ATTEMPTS.c.id == sa.bindparam("attempt_id"))
    .values(outcome=SENT, finished_at=sa.bindparam("now"))
)  # fmt: skip
_ROW_SENT = (
    sa.update(_OUTBOX)
    .where(_OUTBOX.c.id == sa.bindparam("outbox_id"), _OUTBOX.c.status != SENT)
    .values(status=SENT, sent_at=sa.bindparam("now"), lease_until=None, last_error=None,
            updated_at=sa.bindparam("now"))
)  # fmt: skip
#: Both in one statement on PostgreSQL (it runs a data-modifying WITH whether or not it is read).
_SENT_TOGETHER_SQL = f"""
    WITH attempt AS (
        UPDATE outbox_attempts SET outcome = '{SENT}', finished_at = %(now)s
        WHERE id = %(attempt_id)s
    )
    UPDATE outbox SET status = '{SENT}', sent_at = %(now)s, lease_until = NULL, last_error = NULL,
        updated_at = %(now)s
    WHERE id = %(outbox_id)s AND status <> '{SENT}'
"""
#: `_HAND_OFF` for the driver (psycopg's named parameters).
_HAND_OFF_SQL = (
    f"UPDATE outbox SET status = '{HANDED_OFF}', updated_at = %(now)s"
    f" WHERE id = %(outbox_id)s AND status = '{SENDING}' AND attempts = %(number)s"
)


#: The row's state, its lead (fresh) and the dealer the message is for, or the lead's own.
_ROW_LEAD_AND_DEALER = (
    sa.select(_OUTBOX.c.status, _OUTBOX.c.kind, _OUTBOX.c.lead_id, _OUTBOX.c.dealer_id, Lead,
              _DEALER)
    .select_from(_OUTBOX)
    .outerjoin(Lead, Lead.id == _OUTBOX.c.lead_id)
    .outerjoin(_DEALER, _DEALER.id == sa.func.coalesce(_OUTBOX.c.dealer_id, Lead.dealer_id))
    .where(_OUTBOX.c.id == sa.bindparam("outbox_id"))
    .execution_options(populate_existing=True)
)  # fmt: skip
_CLAIMED = _CLAIM_PENDING.cte("claimed")
#: PostgreSQL: the pending row becomes this try's and its running attempt is recorded, in one
#: statement (its own transaction). Nothing comes back if the row was not pending any more.
_ATTEMPT = (
    sa.insert(_ATTEMPTS)
    .from_select(
        ["outbox_id", "number", "runner", "outcome", "started_at"],
        sa.select(sa.bindparam("outbox_id", type_=sa.BigInteger), _CLAIMED.c.attempts,
                  sa.bindparam("runner", type_=sa.String), sa.literal("running"),
                  sa.bindparam("now", type_=UTCDateTime)),
    )
    .returning(_ATTEMPTS.c.id, _ATTEMPTS.c.number)
    .cte("attempt")
)  # fmt: skip
_CLAIM_WITH_ATTEMPT = sa.select(_ATTEMPT.c.number, _ATTEMPT.c.id)


def _claim_at_once(session: Session, settings, outbox_id: int, runner: str) -> Claim | None:
    """The usual case on PostgreSQL in two round trips and no transaction to open or commit:
    read the row with its lead and dealer; if it is pending and may be sent, claim it and record
    the attempt in one statement. None leaves the row to `_claim` (another try holds it, it is
    final, or it is not to be sent: decided there, with the row locked)."""
    session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    row = session.execute(_ROW_LEAD_AND_DEALER, {"outbox_id": outbox_id}).first()
    if row is None or row.status != PENDING:
        return None
    lead, dealer = row[4], row[5]
    if skip_reason(row.kind, lead, row.dealer_id) is not None:
        return None
    now = utcnow()
    claimed = session.connection().execute(_CLAIM_WITH_ATTEMPT, {
        "outbox_id": outbox_id, "lease": lease_until(now, settings.job_timeout), "now": now,
        "runner": runner[:64],
    }).first()  # fmt: skip
    if claimed is None:  # taken between the two statements
        return None
    number, attempt_id = claimed
    return Claim(outbox_id, row.kind, row.lead_id, row.dealer_id, number, attempt_id,
                 (lead, dealer))  # fmt: skip


def _load_lead_and_dealer(session: Session, lead_id: int,
                          dealer_id: int | None) -> tuple[Lead | None, Dealer | None]:  # fmt: skip
    """The lead, fresh, and the dealer the message is for (or the lead's own), in one query."""
    row = session.execute(_LEAD_AND_DEALER, {"lead_id": lead_id, "dealer_id": dealer_id}).first()
    return (row[0], row[1]) if row is not None else (None, None)


def _claim(session: Session, settings, outbox_id: int, runner: str) -> tuple[Claim | None, str]:
    """Make the row this try's (`sending`, with a lease and a running attempt), or say why not."""
    now = utcnow()
    claimed = session.connection().execute(_CLAIM_PENDING, {
        "outbox_id": outbox_id, "lease": lease_until(now, settings.job_timeout), "now": now,
    }).first()  # fmt: skip
    if claimed is not None:
        kind, lead_id, dealer_id, number = claimed
        lead, dealer = _load_lead_and_dealer(session, lead_id, dealer_id)
        if skip_reason(kind, lead, dealer_id) is None:
            attempt_id = session.connection().execute(_INSERT_ATTEMPT, {
                "outbox_id": outbox_id, "number": number, "runner": runner[:64],
                "outcome": "running", "error": None, "started_at": now, "finished_at": None,
            }).scalar_one()  # fmt: skip
            claim = Claim(outbox_id, kind, lead_id, dealer_id, number, attempt_id, (lead, dealer))
            return claim, SENDING
        session.rollback()  # not to be sent: decided below, with the row locked as it was
    return _claim_locked(session, settings, outbox_id, runner)


def _claim_locked(session: Session, settings, outbox_id: int,
                  runner: str) -> tuple[Claim | None, str]:  # fmt: skip
    now = utcnow()
    row = lock_message(session, outbox_id)
    if row is None:
        session.rollback()
        return None, "missing"
    if row.status in FINAL:
        _attempt(session, row.id, runner, "duplicate", f"already {row.status}")
        session.commit()
        return None, "duplicate"
    if row.status in IN_FLIGHT:
        if row.lease_until is not None and row.lease_until > now:
            _attempt(session, row.id, runner, "duplicate", f"try {row.attempts} is in flight")
            session.commit()
            return None, "duplicate"
        interrupt(session, row, now, settings.max_attempts)
        if row.status != PENDING:
            session.commit()
            return None, row.status
    lead = session.get(Lead, row.lead_id, populate_existing=True)
    reason = skip_reason(row.kind, lead, row.dealer_id)
    if reason is not None:
        row.status, row.last_error, row.updated_at = SKIPPED, reason, now
        _attempt(session, row.id, runner, "suppressed", reason)
        if lead is not None and row.kind in DEALER_KINDS and lead.dealer_id != row.dealer_id:
            notify_dealer(session, lead.id, lead.dealer_id)  # the lead's dealer now
        session.commit()
        return None, SKIPPED
    row.attempts += 1
    row.status = SENDING
    row.lease_until = lease_until(now, settings.job_timeout)
    row.next_attempt_at = None
    row.updated_at = now
    attempt = _attempt(session, row.id, runner, "running", None, number=row.attempts)
    session.flush()
    claim = Claim(row.id, row.kind, row.lead_id, row.dealer_id, row.attempts, attempt.id)
    return claim, SENDING  # the caller builds the message, then commits


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {redact(str(error))}"[:500]


def _record_failure(session: Session, settings, claim: Claim, error: Exception) -> str:
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
        row.status == HANDED_OFF and not _definite_failure(error)
    )
    if uncertain and row.kind != DEALER_WEBHOOK:
        row.status = attempt.outcome = UNKNOWN
    else:
        attempt.outcome = "failed"
        if getattr(error, "permanent", False) or row.attempts >= settings.max_attempts:
            row.status = FAILED
        else:
            row.status = PENDING
            row.next_attempt_at = now + retry_delay(settings.job_retry_intervals, row.attempts)
    row.lease_until, row.last_error, row.updated_at = None, message, now
    session.commit()
    return row.status


def _definite_failure(error: Exception) -> bool:
    """After the hand-off, only an answer from the other side proves nothing was delivered."""
    return isinstance(error, DeliveryError)


def _autocommit(engine: sa.Engine) -> sa.Connection:
    """A connection on which each statement commits by itself (one round trip, no BEGIN)."""
    return engine.connect().execution_options(isolation_level="AUTOCOMMIT")


def _autocommitted(engine: sa.Engine, statement, driver_sql: str, values: dict) -> int:
    """Runs one statement as its own transaction; the number of rows it changed.

    On PostgreSQL `driver_sql` goes to the driver on the thread's held connection
    (`leadsvc.held_connection`); if the driver raised there, it runs once more through
    SQLAlchemy, which raises what fails. Elsewhere `statement` (the same, built by SQLAlchemy)
    runs. Both statements this is used for may run twice: the hand-off changes nothing the
    second time if the first went through (the caller then stops: a lost claim), and marking a
    row sent twice is marking it sent.
    """
    on_driver = engine.dialect.name == "postgresql"
    if on_driver:
        changed = run_held(engine, driver_sql, values)
        if changed is not None:
            return changed
    with _autocommit(engine) as connection:
        if on_driver:
            return connection.exec_driver_sql(driver_sql, values).rowcount
        return connection.execute(statement, values).rowcount


def _record_sent(engine: sa.Engine, claim: Claim) -> None:
    """The try succeeded, and the row is sent. A success wins even over a takeover: the row that
    was put back is not sent again. On PostgreSQL one statement (its own transaction)."""
    values = {"attempt_id": claim.attempt_id, "outbox_id": claim.outbox_id, "now": utcnow()}
    if engine.dialect.name == "postgresql":
        _autocommitted(engine, None, _SENT_TOGETHER_SQL, values)
        return
    with engine.begin() as connection:
        connection.execute(_ATTEMPT_SENT, values)
        connection.execute(_ROW_SENT, values)
