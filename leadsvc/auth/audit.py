"""The staff audit log: every state-changing action taken in the console or by `leadsvc users`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from leadsvc.auth.models import StaffAudit
from leadsvc.db import utcnow

#: Who did it, as the audit records it: the account (None and "cli" for the command line).
CLI_ACTOR = "cli"


@dataclass(frozen=True)
class Actor:
    user_id: int | None
    name: str
    ip: str | None = None


COMMAND_LINE = Actor(None, CLI_ACTOR)


def record_action(
    session: Session,
    actor: Actor,
    action: str,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one entry in the caller's transaction (the caller commits)."""
    session.add(
        StaffAudit(
            at=utcnow(),
            user_id=actor.user_id,
            actor=actor.name[:254],
            action=action[:40],
            target=target[:200] if target else None,
            detail=detail,
            ip=actor.ip[:64] if actor.ip else None,
        )
    )


def audit_page(
    session: Session, *, before: int | None = None, limit: int = 50, action: str | None = None
) -> tuple[list[StaffAudit], int | None]:
    """Entries newest first, paged by id; returns the page and the id to continue before."""
    query = sa.select(StaffAudit)
    if before is not None:
        query = query.where(StaffAudit.id < before)
    if action:
        query = query.where(StaffAudit.action == action)
    rows = list(session.scalars(query.order_by(StaffAudit.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, rows[-1].id if more and rows else None
