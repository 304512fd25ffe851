"""API keys: only a hash of each key is stored, with a short public prefix to name it by."""

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from leadsvc.db import Base, BigId, Json, UTCDateTime, utcnow


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


class StaffUser(Base):
    """A person who signs in to the console: an admin, a compliance officer or a dealer's staff."""

    __tablename__ = "staff_users"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    #: Lower-cased; the sign-in name.
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    #: Argon2id hash (argon2-cffi's encoded form, parameters included).
    password_hash: Mapped[str] = mapped_column(sa.String(200))
    role: Mapped[str] = mapped_column(sa.String(16))
    dealer_id: Mapped[int | None] = mapped_column(sa.ForeignKey("dealers.id"), index=True)
    #: Base32 TOTP secret once a second factor is set up.
    totp_secret: Mapped[str | None] = mapped_column(sa.String(64))
    #: A secret shown on the enrolment page, kept until a code from it confirms it.
    totp_pending_secret: Mapped[str | None] = mapped_column(sa.String(64))
    #: The time step of the last code accepted: a code is never taken twice.
    totp_last_step: Mapped[int | None] = mapped_column(sa.BigInteger)
    #: Raised when the password changes or the account is disabled: older sessions end.
    session_version: Mapped[int] = mapped_column(sa.Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class StaffSignInFailure(Base):
    """One failed sign-in, counted per account (a keyed hash of the typed name) and per IP."""

    __tablename__ = "staff_sign_in_failures"
    __table_args__ = (
        sa.Index("ix_staff_sign_in_failures_account", "account", "failed_at"),
        sa.Index("ix_staff_sign_in_failures_ip", "ip", "failed_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account: Mapped[str] = mapped_column(sa.String(64))
    ip: Mapped[str] = mapped_column(sa.String(64))
    failed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StaffAudit(Base):
    """One state-changing action taken in the console or by `leadsvc users`: who, when, what,
    from where."""

    __tablename__ = "staff_audit"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff_users.id"), index=True)
    #: The account's email at the time, or "cli" for the command line.
    actor: Mapped[str] = mapped_column(sa.String(254))
    action: Mapped[str] = mapped_column(sa.String(40))
    target: Mapped[str | None] = mapped_column(sa.String(200))
    detail: Mapped[dict[str, Any] | None] = mapped_column(Json)
    ip: Mapped[str | None] = mapped_column(sa.String(64))
