"""The lead: one row per person, keyed by the normalised email without regard to letter case."""

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from leadsvc.db import Base, BigId, Json, UTCDateTime, utcnow


class Lead(Base):
    """A person who signed up. A repeat signup updates this row; consent history is elsewhere."""

    __tablename__ = "leads"
    __table_args__ = (
        sa.Index("ix_leads_dealer_feed", "dealer_id", "delivery_seq", "id"),
        # The overview's new people per day and by campaign read only the recent leads.
        sa.Index("ix_leads_created_at", "created_at"),
        # The overview's consent split and leads per dealer, counted from the index alone.
        sa.Index("ix_leads_status_dealer", "consent_status", "dealer_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    #: The address as email-validator normalised it (domain lower-cased, IDN in Unicode form).
    email: Mapped[str] = mapped_column(sa.String(254))
    #: `email` lower-cased: the identity of the person (dots and +tags kept as typed).
    email_key: Mapped[str] = mapped_column(sa.String(254), unique=True)
    #: The address exactly as typed, less surrounding spaces.
    email_as_typed: Mapped[str] = mapped_column(sa.String(320))
    first_name: Mapped[str] = mapped_column(sa.String(50))
    last_name: Mapped[str] = mapped_column(sa.String(50))
    zip5: Mapped[str] = mapped_column(sa.String(5))
    zip4: Mapped[str | None] = mapped_column(sa.String(4))
    source: Mapped[str | None] = mapped_column(sa.String(2048))
    utm: Mapped[dict[str, Any] | None] = mapped_column(Json)
    interests: Mapped[list[str] | None] = mapped_column(Json)
    #: given | pending (awaiting confirmation) | confirmed | withdrawn; the consent events
    #: table holds the proof. Only given and confirmed leads are mailed and passed to dealers.
    consent_status: Mapped[str] = mapped_column(sa.String(16))
    consent_text_version: Mapped[int] = mapped_column(sa.ForeignKey("consent_texts.version"))
    signup_count: Mapped[int] = mapped_column(sa.Integer, default=1)
    #: Routing: the dealer that gets this lead (None: the unassigned pool), how far, and why.
    #: `dealer_id` is indexed as the first column of ix_leads_dealer_feed.
    dealer_id: Mapped[int | None] = mapped_column(sa.ForeignKey("dealers.id"))
    distance_km: Mapped[float | None] = mapped_column(sa.Float)
    #: territory | nearest | unassigned
    routing_reason: Mapped[str] = mapped_column(sa.String(16), default="unassigned")
    routing_version: Mapped[int | None] = mapped_column(sa.Integer)
    #: Position in the dealer's feed (see leadsvc.commit_order); renewed when the lead moves.
    delivery_seq: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    #: When the dealer acknowledged the lead; acknowledged leads are never moved.
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: When the person last confirmed by the emailed link (double opt-in, re-consent).
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: When the person last unsubscribed: the address is suppressed until it confirms again.
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: When mail to the address last bounced hard (or soft too often): nothing more is sent to
    #: it until the person confirms the address again.
    bounced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The person's preferences (their preferences page): emails from the brand, and contact by
    #: their dealer (off: the dealer sees the lead without the person's details). Both off is
    #: an unsubscribe; a new signup turns both on again.
    newsletter: Mapped[bool] = mapped_column(sa.Boolean, default=True, server_default=sa.true())
    dealer_contact: Mapped[bool] = mapped_column(sa.Boolean, default=True, server_default=sa.true())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
