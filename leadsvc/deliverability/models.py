"""The record of every bounce and complaint that came back for an email leadsvc sent."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from leadsvc.db import Base, BigId, UTCDateTime, utcnow


class BounceEvent(Base):
    """One recipient's outcome in one notification: a hard or soft bounce, or a complaint.

    `notification_key` (a SHA-256 of the notification's identity and the recipient) is unique,
    so the same notification ingested twice is recorded once. No address is stored: the lead
    and the outbox row it answers say whose it was.
    """

    __tablename__ = "bounce_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    notification_key: Mapped[str] = mapped_column(sa.String(64), unique=True)
    #: hard | soft | complaint
    kind: Mapped[str] = mapped_column(sa.String(16))
    #: message (ingest, IMAP) | ses | sendgrid | postmark
    source: Mapped[str] = mapped_column(sa.String(16))
    lead_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("leads.id", ondelete="SET NULL"), index=True
    )
    #: The outbox row whose email this answers (a plain value: outbox rows may be purged).
    outbox_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    #: The enhanced status code (RFC 3463), e.g. 5.1.1, when the notification gave one.
    status: Mapped[str | None] = mapped_column(sa.String(16))
    #: The server's diagnostic, with any address in it removed.
    diagnostic: Mapped[str | None] = mapped_column(sa.String(300))
    #: Whether this event suppressed the address (a hard bounce, or the soft-bounce limit).
    suppressed: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class WebhookDelivery(Base):
    """One bounce or complaint notification a webhook has processed, by the provider's id for
    it, with a digest of what it said: the same notification again is answered and changes
    nothing; the same id saying something else is refused as a replay."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (sa.UniqueConstraint("provider", "delivery_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    #: ses | sendgrid | postmark
    provider: Mapped[str] = mapped_column(sa.String(16))
    #: The provider's id of the notification (SNS MessageId, sg_event_id, Postmark's record).
    delivery_id: Mapped[str] = mapped_column(sa.String(128))
    #: SHA-256 (hex) of the notification's content as the provider sent it.
    digest: Mapped[str] = mapped_column(sa.String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
