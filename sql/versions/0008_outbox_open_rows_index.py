"""The outbox's status index covers only the rows still open (pending, queued, sending,
handed_off): the dispatchers poll it for pending rows, the sweep for queued ones, the reclaim for
tries in flight. Rows that reached a final state leave it, so it stays as small as the backlog
instead of growing with every message ever sent.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

OPEN = "status IN ('pending', 'queued', 'sending', 'handed_off')"


def upgrade() -> None:
    op.drop_index("ix_outbox_status_next_attempt_at", table_name="outbox")
    op.create_index(
        "ix_outbox_open",
        "outbox",
        ["status", "id"],
        postgresql_where=sa.text(OPEN),
        sqlite_where=sa.text(OPEN),
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_open", table_name="outbox")
    op.create_index("ix_outbox_status_next_attempt_at", "outbox", ["status", "next_attempt_at"])
