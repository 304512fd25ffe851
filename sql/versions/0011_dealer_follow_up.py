"""Dealer follow-up: response targets, opening hours, time zones, holidays, and each dealer's
turn with a lead (its reminder and deadline).

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("dealers") as batch:
        batch.add_column(sa.Column("response_hours", sa.Float(), nullable=True))
        batch.add_column(sa.Column("opening_hours", sa.String(200), nullable=True))
        batch.add_column(sa.Column("time_zone", sa.String(64), nullable=True))
    with op.batch_alter_table("territories") as batch:
        batch.add_column(
            sa.Column("reassign_overdue", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    op.create_table(
        "lead_follow_ups",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("lead_id", BIG_ID, nullable=False),
        sa.Column("dealer_id", sa.Integer(), nullable=False),
        sa.Column("delivery_seq", sa.BigInteger(), nullable=False),
        sa.Column("via", sa.String(16), nullable=False),
        sa.Column("target_hours", sa.Float(), nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("remind_at", TIMESTAMP, nullable=False),
        sa.Column("due_at", TIMESTAMP, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reminded_at", TIMESTAMP, nullable=True),
        sa.Column("overdue_at", TIMESTAMP, nullable=True),
        sa.Column("paused_at", TIMESTAMP, nullable=True),
        sa.Column("paused_seconds", sa.Float(), nullable=False),
        sa.Column("answered_at", TIMESTAMP, nullable=True),
        sa.Column("answered_by", sa.String(8), nullable=True),
        sa.Column("answer_seconds", sa.Float(), nullable=True),
        sa.Column("ended_at", TIMESTAMP, nullable=True),
        sa.Column("end_reason", sa.String(32), nullable=True),
        sa.ForeignKeyConstraint(
            ["lead_id"], ["leads.id"], name="fk_lead_follow_ups_lead_id_leads", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["dealer_id"], ["dealers.id"], name="fk_lead_follow_ups_dealer_id_dealers"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_lead_follow_ups"),
        sa.UniqueConstraint(
            "lead_id", "dealer_id", "delivery_seq", name="uq_lead_follow_ups_lead_id"
        ),
    )
    op.create_index("ix_lead_follow_ups_lead_id", "lead_follow_ups", ["lead_id"])
    op.create_index("ix_lead_follow_ups_dealer_id", "lead_follow_ups", ["dealer_id"])
    op.create_index("ix_lead_follow_ups_state_due_at", "lead_follow_ups", ["state", "due_at"])
    op.create_table(
        "follow_up_holidays",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("dealer_id", sa.Integer(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["dealer_id"],
            ["dealers.id"],
            name="fk_follow_up_holidays_dealer_id_dealers",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_follow_up_holidays"),
    )
    op.create_index("ix_follow_up_holidays_day", "follow_up_holidays", ["day"])
    op.create_index("ix_follow_up_holidays_dealer_id", "follow_up_holidays", ["dealer_id"])


def downgrade() -> None:
    op.drop_table("follow_up_holidays")
    op.drop_table("lead_follow_ups")
    with op.batch_alter_table("territories") as batch:
        batch.drop_column("reassign_overdue")
    with op.batch_alter_table("dealers") as batch:
        batch.drop_column("time_zone")
        batch.drop_column("opening_hours")
        batch.drop_column("response_hours")
