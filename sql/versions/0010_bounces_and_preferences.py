"""Deliverability: bounce and complaint events, the lead's bounce suppression, the Message-ID
each outbox email went out with.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "bounce_events",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("notification_key", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("lead_id", BIG_ID, nullable=True),
        sa.Column("outbox_id", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(16), nullable=True),
        sa.Column("diagnostic", sa.String(300), nullable=True),
        sa.Column("suppressed", sa.Boolean(), nullable=False),
        sa.Column("received_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["lead_id"],
            ["leads.id"],
            name="fk_bounce_events_lead_id_leads",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_bounce_events"),
        sa.UniqueConstraint("notification_key", name="uq_bounce_events_notification_key"),
    )
    op.create_index("ix_bounce_events_lead_id", "bounce_events", ["lead_id"])
    op.create_index("ix_bounce_events_received_at", "bounce_events", ["received_at"])
    op.add_column("leads", sa.Column("bounced_at", TIMESTAMP, nullable=True))
    op.add_column("outbox", sa.Column("message_id", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("message_id")
    with op.batch_alter_table("leads") as batch:
        batch.drop_column("bounced_at")
    op.drop_index("ix_bounce_events_received_at", table_name="bounce_events")
    op.drop_index("ix_bounce_events_lead_id", table_name="bounce_events")
    op.drop_table("bounce_events")
