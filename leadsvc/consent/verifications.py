"""Runs of the ledger verification, recorded with their result (the overview shows the last)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from leadsvc.consent.chain import VerifyReport, verify_chain
from leadsvc.consent.models import ConsentVerification
from leadsvc.db import utcnow


def run_verification(session: Session, actor: str, key: bytes | None = None) -> VerifyReport:
    """Verify the whole chain and record the run (who, when, result); commits."""
    started = utcnow()
    report = verify_chain(session, key)
    session.add(
        ConsentVerification(
            actor=actor[:260],
            started_at=started,
            finished_at=utcnow(),
            ok=report.ok,
            seals=report.seals,
            events=report.events,
            unsealed=report.unsealed,
            problem=report.problem[:500] if report.problem else None,
        )
    )
    session.commit()
    return report


def last_verification(session: Session) -> ConsentVerification | None:
    return session.scalar(
        sa.select(ConsentVerification).order_by(ConsentVerification.id.desc()).limit(1)
    )
