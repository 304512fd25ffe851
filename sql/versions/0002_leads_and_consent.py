"""Leads, consent texts (version 1 is the form's notice) and append-only consent events.

Revision ID: 0002
Revises: 0001
"""

import hashlib
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

NOTICE_V1 = (
    "After we receive your information it may be used by MINI USA and your MINI Dealer "
    "to contact you."
)

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)

PG_APPEND_ONLY = """
CREATE FUNCTION consent_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'consent_events is append-only: % refused', TG_OP;
END $$;
CREATE TRIGGER consent_events_no_change BEFORE UPDATE OR DELETE ON consent_events
    FOR EACH ROW EXECUTE FUNCTION consent_events_append_only();
CREATE TRIGGER consent_events_no_truncate BEFORE TRUNCATE ON consent_events
    FOR EACH STATEMENT EXECUTE FUNCTION consent_events_append_only();
"""
SQLITE_APPEND_ONLY = [
    """CREATE TRIGGER consent_events_no_update BEFORE UPDATE ON consent_events
       BEGIN SELECT RAISE(ABORT, 'consent_events is append-only: UPDATE refused'); END""",
    """CREATE TRIGGER consent_events_no_delete BEFORE DELETE ON consent_events
       BEGIN SELECT RAISE(ABORT, 'consent_events is append-only: DELETE refused'); END""",
]


def upgrade() -> None:
    consent_texts = op.create_table(
        "consent_texts",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("published_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("version", name="pk_consent_texts"),
    )
    op.create_index(
        "uq_consent_texts_one_active",
        "consent_texts",
        ["active"],
        unique=True,
        postgresql_where=sa.text("active"),
        sqlite_where=sa.text("active"),
    )
    op.bulk_insert(
        consent_texts,
        [
            {
                "version": 1,
                "text": NOTICE_V1,
                "sha256": hashlib.sha256(NOTICE_V1.encode()).hexdigest(),
                "active": True,
                "published_at": datetime.now(UTC),
            }
        ],
    )

    op.create_table(
        "leads",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("email_key", sa.String(254), nullable=False),
        sa.Column("email_as_typed", sa.String(320), nullable=False),
        sa.Column("first_name", sa.String(50), nullable=False),
        sa.Column("last_name", sa.String(50), nullable=False),
        sa.Column("zip5", sa.String(5), nullable=False),
        sa.Column("zip4", sa.String(4), nullable=True),
        sa.Column("source", sa.String(2048), nullable=True),
        sa.Column("utm", JSON, nullable=True),
        sa.Column("interests", JSON, nullable=True),
        sa.Column("consent_status", sa.String(16), nullable=False),
        sa.Column("consent_text_version", sa.Integer(), nullable=False),
        sa.Column("signup_count", sa.Integer(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["consent_text_version"],
            ["consent_texts.version"],
            name="fk_leads_consent_text_version_consent_texts",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_leads"),
        sa.UniqueConstraint("email_key", name="uq_leads_email_key"),
    )

    op.create_table(
        "consent_events",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("lead_id", sa.BigInteger(), nullable=True),
        sa.Column("subject", sa.String(254), nullable=False),
        sa.Column("event_type", sa.String(16), nullable=False),
        sa.Column("text_version", sa.Integer(), nullable=False),
        sa.Column("occurred_at", TIMESTAMP, nullable=False),
        sa.Column("ip", sa.String(45), nullable=True),
        sa.Column("user_agent", sa.String(512), nullable=True),
        sa.Column("source_url", sa.String(2048), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.ForeignKeyConstraint(
            ["text_version"],
            ["consent_texts.version"],
            name="fk_consent_events_text_version_consent_texts",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_consent_events"),
    )
    op.create_index("ix_consent_events_lead_id", "consent_events", ["lead_id"])
    op.create_index("ix_consent_events_subject", "consent_events", ["subject"])
    op.create_index("ix_consent_events_occurred_at", "consent_events", ["occurred_at"])

    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_APPEND_ONLY)
    else:
        for statement in SQLITE_APPEND_ONLY:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TABLE consent_events")
        op.execute("DROP FUNCTION consent_events_append_only()")
    else:
        op.drop_table("consent_events")
    op.drop_table("leads")
    op.drop_index("uq_consent_texts_one_active", table_name="consent_texts")
    op.drop_table("consent_texts")
