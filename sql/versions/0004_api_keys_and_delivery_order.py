"""API keys (hash and public prefix only) and the order in which dealers receive leads.

`leads.delivery_seq` orders a dealer's lead feed: on PostgreSQL the id of the transaction that
routed the lead to its dealer, on SQLite a counter taken under the single-writer lock. The feed
only serves rows below the oldest running transaction, so a page never skips a lead that commits
late, and a lead moved to another dealer reappears at the end of the new dealer's feed.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("dealer_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(100), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("last_used_at", TIMESTAMP, nullable=True),
        sa.Column("revoked_at", TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(
            ["dealer_id"], ["dealers.id"], name="fk_api_keys_dealer_id_dealers"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("prefix", name="uq_api_keys_prefix"),
    )
    op.create_index("ix_api_keys_dealer_id", "api_keys", ["dealer_id"])
    with op.batch_alter_table("leads") as batch:
        batch.add_column(
            sa.Column("delivery_seq", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.create_index("ix_leads_dealer_feed", ["dealer_id", "delivery_seq", "id"])
    with op.batch_alter_table("leads") as batch:
        batch.alter_column("delivery_seq", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("leads") as batch:
        batch.drop_index("ix_leads_dealer_feed")
        batch.drop_column("delivery_seq")
    op.drop_index("ix_api_keys_dealer_id", table_name="api_keys")
    op.drop_table("api_keys")
