"""Runs of the ledger verification, recorded with their result (the overview shows the last).

A full verification reads every consent event (about a minute per million events), so the
console never runs one inside a request: it asks for one (`request_verification`, a row without
a finish time) and a job runs it (`run_requested`; `leadsvc.jobs.maintenance` starts it on rq or on
a thread of the web process). `leadsvc consent verify` runs one at once from the command line.
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from leadsvc.consent.chain import VerifyReport, verify_chain
from leadsvc.consent.models import ConsentVerification
from leadsvc.db import utcnow

#: A verification asked for longer ago than this and still unfinished is taken for lost (its
#: worker or process ended): it no longer holds back a new one.
LOST_AFTER = timedelta(hours=1)


def _finish(run: ConsentVerification, report: VerifyReport) -> None:
    run.finished_at = utcnow()
    run.ok = report.ok
    run.seals, run.events, run.unsealed = report.seals, report.events, report.unsealed
    run.problem = report.problem[:500] if report.problem else None


def run_verification(session: Session, actor: str, key: bytes | None = None) -> VerifyReport:
    """Verify the whole chain now and record the run (who, when, result); commits."""
    # The row is written after the reading: a transaction that has written holds back the
    # sealing of every event committed after it starts (see leadsvc.commit_order).
    run = ConsentVerification(actor=actor[:260], started_at=utcnow())
    report = verify_chain(session, key)
    _finish(run, report)
    session.add(run)
    session.commit()
    return report


def pending_verification(session: Session) -> ConsentVerification | None:
    """The verification asked for and not finished yet (None if none, or if it was lost)."""
    return session.scalar(
        sa.select(ConsentVerification)
        .where(
            ConsentVerification.finished_at.is_(None),
            ConsentVerification.started_at > utcnow() - LOST_AFTER,
        )
        .order_by(ConsentVerification.id.desc())
        .limit(1)
    )


def request_verification(session: Session, actor: str) -> tuple[ConsentVerification, bool]:
    """Ask for a verification: (the run, True) if a new one was recorded (commits), or (the
    run already waiting or running, False); one at a time."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('leadsvc.verify'))"))
    pending = pending_verification(session)
    if pending is not None:
        session.rollback()
        return pending, False
    run = ConsentVerification(actor=actor[:260], started_at=utcnow())
    session.add(run)
    session.commit()
    return run, True


def run_requested(session: Session, verification_id: int, key: bytes | None = None):
    """Run the verification asked for as `verification_id` and record its result (commits);
    None if it is finished already (a job that ran twice) or unknown."""
    run = session.get(ConsentVerification, verification_id)
    if run is None or run.finished_at is not None:
        return None
    report = verify_chain(session, key)
    _finish(run, report)
    session.commit()
    return report


def last_verification(session: Session) -> ConsentVerification | None:
    """The last finished verification."""
    return session.scalar(
        sa.select(ConsentVerification)
        .where(ConsentVerification.finished_at.is_not(None))
        .order_by(ConsentVerification.id.desc())
        .limit(1)
    )
