"""Ledger verifications asked for in the console run as jobs: a run without a result yet.

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

RESULT = (
    ("finished_at", sa.DateTime(timezone=True)),
    ("ok", sa.Boolean()),
    ("seals", sa.Integer()),
    ("events", sa.BigInteger()),
    ("unsealed", sa.BigInteger()),
)


def upgrade() -> None:
    with op.batch_alter_table("consent_verifications") as batch:
        for name, type_ in RESULT:
            batch.alter_column(name, existing_type=type_, nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM consent_verifications WHERE finished_at IS NULL")
    with op.batch_alter_table("consent_verifications") as batch:
        for name, type_ in RESULT:
            batch.alter_column(name, existing_type=type_, nullable=False)
