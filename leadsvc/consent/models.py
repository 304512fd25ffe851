"""Consent texts (what a person was shown) and consent events (who agreed to what, when, how)."""

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from leadsvc.db import Base, BigId, UTCDateTime, utcnow


class ConsentText(Base):
    """One published version of the consent notice. At most one version is active."""

    __tablename__ = "consent_texts"
    __table_args__ = (
        sa.Index(
            "uq_consent_texts_one_active",
            "active",
            unique=True,
            postgresql_where=sa.text("active"),
            sqlite_where=sa.text("active"),
        ),
    )

    version: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    text: Mapped[str] = mapped_column(sa.Text)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    active: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    published_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ConsentEvent(Base):
    """An append-only record; database triggers refuse UPDATE, DELETE and TRUNCATE."""

    __tablename__ = "consent_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    #: The lead's id when the event happened (kept as a plain value: leads may be purged).
    lead_id: Mapped[int | None] = mapped_column(sa.BigInteger, index=True)
    #: The person: their normalised email address.
    subject: Mapped[str] = mapped_column(sa.String(254), index=True)
    event_type: Mapped[str] = mapped_column(sa.String(16))
    text_version: Mapped[int] = mapped_column(sa.ForeignKey("consent_texts.version"))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    ip: Mapped[str | None] = mapped_column(sa.String(45))
    user_agent: Mapped[str | None] = mapped_column(sa.String(512))
    source_url: Mapped[str | None] = mapped_column(sa.String(2048))
    request_id: Mapped[str | None] = mapped_column(sa.String(64))
