"""Signups refused after the rate limit (invalid input, bots), counted per day and reason.

Only the count is kept, nothing the person typed. A refusal by the rate limit itself is not
written here (that would give every over-limit request a database write); /metrics counts it.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from leadsvc.db import Base, utcnow

log = logging.getLogger(__name__)
#: The /metrics outcomes that are recorded here.
RECORDED = ("invalid", "bot")


class SignupRefusal(Base):
    """How many signups were refused on one day (UTC) for one reason."""

    __tablename__ = "signup_refusals"

    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    reason: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    count: Mapped[int] = mapped_column(sa.Integer)


def record_refusal(session: Session, reason: str) -> None:
    """Add one to today's count for `reason` (one upsert statement); commits."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    table = SignupRefusal.__table__
    statement = dialect.insert(table).values(day=utcnow().date(), reason=reason, count=1)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.day, table.c.reason],
        set_={"count": table.c.count + 1},
    )
    session.execute(statement)
    session.commit()


def refusals_per_day(session: Session, days: int) -> dict[date, int]:
    """Refused signups of each of the last `days` days (days without any are left out)."""
    since = utcnow().date() - timedelta(days=days - 1)
    rows = session.execute(
        sa.select(SignupRefusal.day, sa.func.sum(SignupRefusal.count))
        .where(SignupRefusal.day >= since)
        .group_by(SignupRefusal.day)
    )
    return {day: int(total) for day, total in rows}
