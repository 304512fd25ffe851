"""The subscriber's own preferences: emails from the brand, contact by the dealer.

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for name in ("newsletter", "dealer_contact"):
        op.add_column(
            "leads", sa.Column(name, sa.Boolean(), nullable=False, server_default=sa.true())
        )


def downgrade() -> None:
    with op.batch_alter_table("leads") as batch:
        batch.drop_column("dealer_contact")
        batch.drop_column("newsletter")
