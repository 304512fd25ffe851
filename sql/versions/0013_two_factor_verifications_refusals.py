"""Staff second factor (pending secret, last accepted step), ledger verification runs, refused
signups per day, and indexes for the console's pages.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("staff_users") as batch:
        batch.add_column(sa.Column("totp_pending_secret", sa.String(64), nullable=True))
        batch.add_column(sa.Column("totp_last_step", sa.BigInteger(), nullable=True))
    op.create_table(
        "consent_verifications",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("actor", sa.String(260), nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("finished_at", TIMESTAMP, nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("seals", sa.Integer(), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("unsealed", sa.BigInteger(), nullable=False),
        sa.Column("problem", sa.String(500), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_consent_verifications"),
    )
    op.create_table(
        "signup_refusals",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "reason", name="pk_signup_refusals"),
    )
    op.create_index("ix_leads_created_at", "leads", ["created_at"])
    op.create_index("ix_leads_status_dealer", "leads", ["consent_status", "dealer_id"])
    given = sa.text("event_type = 'given'")
    op.create_index(
        "ix_consent_events_given_at",
        "consent_events",
        ["occurred_at"],
        postgresql_where=given,
        sqlite_where=given,
    )
    op.create_index(
        "ix_consent_events_subject_lower", "consent_events", [sa.text("lower(subject)")]
    )
    troubled = sa.text("status IN ('failed', 'unknown')")
    op.create_index(
        "ix_outbox_failed_unknown",
        "outbox",
        ["status"],
        postgresql_where=troubled,
        sqlite_where=troubled,
    )
    op.create_index("ix_outbox_attempts_finished_at", "outbox_attempts", ["finished_at"])


def downgrade() -> None:
    op.drop_index("ix_outbox_attempts_finished_at", table_name="outbox_attempts")
    op.drop_index("ix_outbox_failed_unknown", table_name="outbox")
    op.drop_index("ix_consent_events_subject_lower", table_name="consent_events")
    op.drop_index("ix_consent_events_given_at", table_name="consent_events")
    op.drop_index("ix_leads_status_dealer", table_name="leads")
    op.drop_index("ix_leads_created_at", table_name="leads")
    op.drop_table("signup_refusals")
    op.drop_table("consent_verifications")
    with op.batch_alter_table("staff_users") as batch:
        batch.drop_column("totp_last_step")
        batch.drop_column("totp_pending_secret")
