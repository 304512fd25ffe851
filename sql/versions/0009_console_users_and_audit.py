"""Staff console: users (Argon2 password hashes), failed sign-ins and the staff audit log.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    op.create_table(
        "staff_users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("dealer_id", sa.Integer(), nullable=True),
        sa.Column("totp_secret", sa.String(64), nullable=True),
        sa.Column("session_version", sa.Integer(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("last_sign_in_at", TIMESTAMP, nullable=True),
        sa.Column("disabled_at", TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(
            ["dealer_id"], ["dealers.id"], name="fk_staff_users_dealer_id_dealers"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_staff_users"),
        sa.UniqueConstraint("email", name="uq_staff_users_email"),
    )
    op.create_index("ix_staff_users_dealer_id", "staff_users", ["dealer_id"])
    op.create_table(
        "staff_sign_in_failures",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("ip", sa.String(64), nullable=False),
        sa.Column("failed_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_staff_sign_in_failures"),
    )
    op.create_index(
        "ix_staff_sign_in_failures_account", "staff_sign_in_failures", ["account", "failed_at"]
    )
    op.create_index("ix_staff_sign_in_failures_ip", "staff_sign_in_failures", ["ip", "failed_at"])
    op.create_table(
        "staff_audit",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(254), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("target", sa.String(200), nullable=True),
        sa.Column("detail", JSON, nullable=True),
        sa.Column("ip", sa.String(64), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["staff_users.id"], name="fk_staff_audit_user_id_staff_users"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_staff_audit"),
    )
    op.create_index("ix_staff_audit_at", "staff_audit", ["at"])
    op.create_index("ix_staff_audit_user_id", "staff_audit", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_staff_audit_user_id", table_name="staff_audit")
    op.drop_index("ix_staff_audit_at", table_name="staff_audit")
    op.drop_table("staff_audit")
    op.drop_index("ix_staff_sign_in_failures_ip", table_name="staff_sign_in_failures")
    op.drop_index("ix_staff_sign_in_failures_account", table_name="staff_sign_in_failures")
    op.drop_table("staff_sign_in_failures")
    op.drop_index("ix_staff_users_dealer_id", table_name="staff_users")
    op.drop_table("staff_users")
