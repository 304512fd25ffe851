"""API keys: only a hash of each key is stored, with a short public prefix to name it by."""

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from leadsvc.db import Base, UTCDateTime, utcnow


class ApiKey(Base):
    """A bearer key for one role (dealer, compliance, admin); dealer keys belong to one dealer."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    #: The public part of the key ("lsk_" + 8 characters), shown in listings and logs.
    prefix: Mapped[str] = mapped_column(sa.String(16), unique=True)
    #: SHA-256 of the whole key; the key itself is shown once and never stored.
    key_hash: Mapped[str] = mapped_column(sa.String(64))
    role: Mapped[str] = mapped_column(sa.String(16))
    dealer_id: Mapped[int | None] = mapped_column(sa.ForeignKey("dealers.id"), index=True)
    name: Mapped[str | None] = mapped_column(sa.String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
