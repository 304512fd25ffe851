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
    """An append-only record; database triggers refuse UPDATE, DELETE and TRUNCATE, except the
    erasure that replaces `subject` by `erased:<keyed hash>` and changes nothing else."""

    __tablename__ = "consent_events"
    __table_args__ = (
        # The overview's signups per day count only these, from the index alone.
        sa.Index(
            "ix_consent_events_given_at",
            "occurred_at",
            postgresql_where=sa.text("event_type = 'given'"),
            sqlite_where=sa.text("event_type = 'given'"),
        ),
        # A person's events by address whatever its letter case (the People page, the export).
        sa.Index("ix_consent_events_subject_lower", sa.text("lower(subject)")),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    #: The lead's id when the event happened (kept as a plain value: leads may be purged).
    lead_id: Mapped[int | None] = mapped_column(sa.BigInteger, index=True)
    #: The person: their normalised email address, or `erased:<keyed hash>` after erasure.
    subject: Mapped[str] = mapped_column(sa.String(254), index=True)
    event_type: Mapped[str] = mapped_column(sa.String(16))
    text_version: Mapped[int] = mapped_column(sa.ForeignKey("consent_texts.version"))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    ip: Mapped[str | None] = mapped_column(sa.String(45))
    user_agent: Mapped[str | None] = mapped_column(sa.String(512))
    source_url: Mapped[str | None] = mapped_column(sa.String(2048))
    request_id: Mapped[str | None] = mapped_column(sa.String(64))
    #: SHA-256 of the event's content with the subject's keyed hash (see consent.chain).
    digest: Mapped[str | None] = mapped_column(sa.String(64))
    #: Chain order: the inserting transaction on PostgreSQL (server default), None on SQLite.
    txid: Mapped[int | None] = mapped_column(sa.BigInteger, server_default=sa.FetchedValue())


class ConsentSeal(Base):
    """One link of the hash chain: the events since the previous seal, and that seal's hash."""

    __tablename__ = "consent_seals"

    seq: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    sealed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    first_txid: Mapped[int] = mapped_column(sa.BigInteger)
    first_event_id: Mapped[int] = mapped_column(sa.BigInteger)
    last_txid: Mapped[int] = mapped_column(sa.BigInteger)
    last_event_id: Mapped[int] = mapped_column(sa.BigInteger)
    event_count: Mapped[int] = mapped_column(sa.Integer)
    events_digest: Mapped[str] = mapped_column(sa.String(64))
    prev_hash: Mapped[str] = mapped_column(sa.String(64))
    seal_hash: Mapped[str] = mapped_column(sa.String(64))


class ConsentVerification(Base):
    """One run of the ledger verification (`leadsvc consent verify` or the console): its result.
    A run asked for in the console and not finished yet has no `finished_at` nor result."""

    __tablename__ = "consent_verifications"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    #: "cli" or "console:<staff email>".
    actor: Mapped[str] = mapped_column(sa.String(260))
    #: When it was asked for (the console) or started (the command line).
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ok: Mapped[bool | None] = mapped_column(sa.Boolean)
    seals: Mapped[int | None] = mapped_column(sa.Integer)
    events: Mapped[int | None] = mapped_column(sa.BigInteger)
    unsealed: Mapped[int | None] = mapped_column(sa.BigInteger)
    problem: Mapped[str | None] = mapped_column(sa.String(500))


class ExportAudit(Base):
    """Who exported which consent events, when, with which filters, and how many rows."""

    __tablename__ = "export_audits"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    actor: Mapped[str] = mapped_column(sa.String(100))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    filters: Mapped[dict] = mapped_column(sa.JSON)
    format: Mapped[str] = mapped_column(sa.String(8))
    rows: Mapped[int | None] = mapped_column(sa.BigInteger)


class ErasedSubject(Base):
    """The keyed hash of an erased address: a later signup from it is new consent."""

    __tablename__ = "erased_subjects"

    subject_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    erased_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
