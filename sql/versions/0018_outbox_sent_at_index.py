"""The overview's emails sent per day read the recent sent outbox rows from an index.

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

SENT = sa.text("status = 'sent'")


def upgrade() -> None:
    op.create_index(
        "ix_outbox_sent_at",
        "outbox",
        ["sent_at", "kind"],
        postgresql_where=SENT,
        sqlite_where=SENT,
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_sent_at", table_name="outbox")
