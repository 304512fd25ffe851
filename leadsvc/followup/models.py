"""Follow-up records: each dealer's turn with a lead, and the holidays admins add."""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from leadsvc.db import Base, BigId, UTCDateTime, utcnow

OPEN, ANSWERED, MOVED, CLOSED = "open", "answered", "moved", "closed"


class FollowUp(Base):
    """One dealer's turn with one lead: when its clock started, when it is reminded and due, and
    how the turn ended. A lead moved to another dealer starts a new turn there."""

    __tablename__ = "lead_follow_ups"
    __table_args__ = (
        sa.UniqueConstraint("lead_id", "dealer_id", "delivery_seq"),
        sa.Index("ix_lead_follow_ups_state_due_at", "state", "due_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    lead_id: Mapped[int] = mapped_column(sa.ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    dealer_id: Mapped[int] = mapped_column(sa.ForeignKey("dealers.id"), index=True)
    #: The lead's feed position when the turn started (a move gives the lead a new one).
    delivery_seq: Mapped[int] = mapped_column(sa.BigInteger)
    #: routing (the lead arrived) or reassignment (another dealer missed the target).
    via: Mapped[str] = mapped_column(sa.String(16))
    target_hours: Mapped[float] = mapped_column(sa.Float)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    remind_at: Mapped[datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: open | answered | moved (offered on at the target) | closed (withdrawn, moved by hand or
    #: by a deactivation, or acknowledged after the target)
    state: Mapped[str] = mapped_column(sa.String(16), default=OPEN)
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The target passed and the lead stayed (a territory's lead, or moved as often as allowed).
    overdue_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: While the dealer is deactivated the clock stands still from here.
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Business seconds the clock stood still in earlier pauses.
    paused_seconds: Mapped[float] = mapped_column(sa.Float, default=0.0)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: ack (the dealer API's acknowledgement) or crm (the answer endpoint).
    answered_by: Mapped[str | None] = mapped_column(sa.String(8))
    #: Business seconds from the start to the answer (pauses left out).
    answer_seconds: Mapped[float | None] = mapped_column(sa.Float)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_reason: Mapped[str | None] = mapped_column(sa.String(32))


class Holiday(Base):
    """A closed day an admin added: for one dealer, or for every dealer (dealer_id None)."""

    __tablename__ = "follow_up_holidays"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    day: Mapped[date] = mapped_column(sa.Date, index=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    dealer_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("dealers.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
