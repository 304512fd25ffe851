"""Drop ix_leads_dealer_id: ix_leads_dealer_feed (dealer_id, delivery_seq, id) serves every lookup
by dealer, unassigned leads (dealer_id IS NULL) and the foreign key's checks, and each new lead
no longer writes a second index entry for the same column.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_leads_dealer_id", table_name="leads")


def downgrade() -> None:
    op.create_index("ix_leads_dealer_id", "leads", ["dealer_id"])
