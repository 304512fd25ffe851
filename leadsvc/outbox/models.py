"""The outbox (what must still be sent) and the record of every try at sending it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from leadsvc.db import Base, BigId, Json, UTCDateTime, utcnow

_OPEN = "status IN ('pending', 'queued', 'sending', 'handed_off')"
_TROUBLED = "status IN ('failed', 'unknown')"


class OutboxMessage(Base):
    """One outbound job, written in the transaction that made it necessary.

    The row is the record of what must happen; Redis is only the delivery path. `status` moves
    pending -> sending -> (handed_off ->) sent, or back to pending for a retry, or ends as
    failed, unknown (the process died after handing the message over) or skipped (suppressed).
    """

    __tablename__ = "outbox"
    __table_args__ = (
        # Only rows still open: the dispatchers, the sweep and the reclaim look for them.
        sa.Index(
            "ix_outbox_open",
            "status",
            "id",
            postgresql_where=sa.text(_OPEN),
            sqlite_where=sa.text(_OPEN),
        ),
        # The overview's failed and unknown counts (few rows, kept forever).
        sa.Index(
            "ix_outbox_failed_unknown",
            "status",
            postgresql_where=sa.text(_TROUBLED),
            sqlite_where=sa.text(_TROUBLED),
        ),
        # The overview's emails sent per day (the bounce rate) read only the recent sent rows,
        # from the index alone.
        sa.Index(
            "ix_outbox_sent_at",
            "sent_at",
            "kind",
            postgresql_where=sa.text("status = 'sent'"),
            sqlite_where=sa.text("status = 'sent'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    #: welcome_email | confirm_email | dealer_email | dealer_webhook
    kind: Mapped[str] = mapped_column(sa.String(32))
    lead_id: Mapped[int] = mapped_column(sa.ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    #: The dealer a dealer notification goes to (None for emails to the person).
    dealer_id: Mapped[int | None] = mapped_column(sa.ForeignKey("dealers.id"))
    #: Ids only (lead, dealer): the job reads everything else when it runs.
    payload: Mapped[dict[str, Any]] = mapped_column(Json)
    status: Mapped[str] = mapped_column(sa.String(16), default="pending")
    #: Tries started so far (the attempts table holds each one).
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    #: Earliest time of the next try (None: now).
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: While sending: when the try's claim runs out (its job timeout has certainly passed).
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: While queued: the rq job that holds the row (one job delivers a batch of rows of one
    #: channel). A re-enqueue after a lost job takes the row's next generation.
    job_id: Mapped[str | None] = mapped_column(sa.String(64))
    generation: Mapped[int] = mapped_column(sa.Integer, default=1)
    last_error: Mapped[str | None] = mapped_column(sa.String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The Message-ID of the email this row sends (bounces and complaints quote it).
    message_id: Mapped[str | None] = mapped_column(sa.String(255))


class OutboxAttempt(Base):
    """One run of an outbox job: when, by which job, with what outcome and error."""

    __tablename__ = "outbox_attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    outbox_id: Mapped[int] = mapped_column(
        sa.ForeignKey("outbox.id", ondelete="CASCADE"), index=True
    )
    #: The try's number (1, 2, ...); None for a run that sent nothing (duplicate, suppressed).
    number: Mapped[int | None] = mapped_column(sa.Integer)
    #: The rq job id, or "in-process" for the embedded drainer.
    runner: Mapped[str] = mapped_column(sa.String(64))
    #: running | sent | failed | interrupted | unknown | duplicate | suppressed
    outcome: Mapped[str] = mapped_column(sa.String(16))
    error: Mapped[str | None] = mapped_column(sa.String(500))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Indexed for the overview's jobs per hour.
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
