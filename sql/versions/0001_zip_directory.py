"""ZIP directory: every US ZIP code, its place and centre.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "zip_codes",
        sa.Column("zip5", sa.String(5), nullable=False),
        sa.Column("city", sa.String(100), nullable=False),
        sa.Column("state", sa.String(2), nullable=False),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("zip5", name="pk_zip_codes"),
    )


def downgrade() -> None:
    op.drop_table("zip_codes")
