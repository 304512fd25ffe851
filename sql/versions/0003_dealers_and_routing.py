"""Dealer directory, territories, the ZIP routing table, lead routing and lead moves.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "dealers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(16), nullable=False),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("street", sa.String(200), nullable=False),
        sa.Column("city", sa.String(100), nullable=False),
        sa.Column("state", sa.String(2), nullable=False),
        sa.Column("zip5", sa.String(5), nullable=False),
        sa.Column("phone", sa.String(32), nullable=False),
        sa.Column("lead_email", sa.String(254), nullable=False),
        sa.Column("webhook_url", sa.String(2048), nullable=True),
        sa.Column("webhook_secret", sa.String(200), nullable=True),
        sa.Column("latitude", sa.Float(), nullable=False),
        sa.Column("longitude", sa.Float(), nullable=False),
        sa.Column("coordinates_from", sa.String(8), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_dealers"),
        sa.UniqueConstraint("code", name="uq_dealers_code"),
    )
    op.create_table(
        "territories",
        sa.Column("zip5", sa.String(5), nullable=False),
        sa.Column("dealer_id", sa.Integer(), nullable=False),
        sa.Column("assigned_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["dealer_id"], ["dealers.id"], name="fk_territories_dealer_id_dealers"
        ),
        sa.PrimaryKeyConstraint("zip5", name="pk_territories"),
    )
    op.create_index("ix_territories_dealer_id", "territories", ["dealer_id"])
    op.create_table(
        "routing_versions",
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("built_at", TIMESTAMP, nullable=False),
        sa.Column("dealers", sa.Integer(), nullable=False),
        sa.Column("routed_zips", sa.Integer(), nullable=False),
        sa.Column("territory_zips", sa.Integer(), nullable=False),
        sa.Column("build_ms", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("version", name="pk_routing_versions"),
    )
    op.create_table(
        "zip_routes",
        sa.Column("zip5", sa.String(5), nullable=False),
        sa.Column("dealer_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("distance_km", sa.Float(), nullable=True),
        sa.Column("distance_miles", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["dealer_id"], ["dealers.id"], name="fk_zip_routes_dealer_id_dealers"
        ),
        sa.PrimaryKeyConstraint("zip5", name="pk_zip_routes"),
    )
    op.create_index("ix_zip_routes_dealer_id", "zip_routes", ["dealer_id"])

    with op.batch_alter_table("leads") as batch:
        batch.add_column(sa.Column("dealer_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("distance_km", sa.Float(), nullable=True))
        batch.add_column(
            sa.Column("routing_reason", sa.String(16), nullable=False, server_default="unassigned")
        )
        batch.add_column(sa.Column("routing_version", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("acknowledged_at", TIMESTAMP, nullable=True))
        batch.create_foreign_key("fk_leads_dealer_id_dealers", "dealers", ["dealer_id"], ["id"])
        batch.create_index("ix_leads_dealer_id", ["dealer_id"])
    with op.batch_alter_table("leads") as batch:
        batch.alter_column("routing_reason", server_default=None)

    op.create_table(
        "lead_moves",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("lead_id", BIG_ID, nullable=False),
        sa.Column("from_dealer_id", sa.Integer(), nullable=True),
        sa.Column("to_dealer_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("routing_version", sa.Integer(), nullable=True),
        sa.Column("moved_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["lead_id"], ["leads.id"], name="fk_lead_moves_lead_id_leads", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["from_dealer_id"], ["dealers.id"], name="fk_lead_moves_from_dealer_id_dealers"
        ),
        sa.ForeignKeyConstraint(
            ["to_dealer_id"], ["dealers.id"], name="fk_lead_moves_to_dealer_id_dealers"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_lead_moves"),
    )
    op.create_index("ix_lead_moves_lead_id", "lead_moves", ["lead_id"])


def downgrade() -> None:
    op.drop_index("ix_lead_moves_lead_id", table_name="lead_moves")
    op.drop_table("lead_moves")
    with op.batch_alter_table("leads") as batch:
        batch.drop_index("ix_leads_dealer_id")
        batch.drop_constraint("fk_leads_dealer_id_dealers", type_="foreignkey")
        for column in (
            "acknowledged_at",
            "routing_version",
            "routing_reason",
            "distance_km",
            "dealer_id",
        ):
            batch.drop_column(column)
    op.drop_index("ix_zip_routes_dealer_id", table_name="zip_routes")
    op.drop_table("zip_routes")
    op.drop_table("routing_versions")
    op.drop_index("ix_territories_dealer_id", table_name="territories")
    op.drop_table("territories")
    op.drop_table("dealers")
