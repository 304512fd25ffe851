"""Compliance: consent events' digest and chain order, seals, export audit, erased subjects.

Consent events stay append-only, with one exception the triggers now allow: erasure may replace
an event's subject (an email address) by `erased:<keyed hash>`, changing nothing else. The event's
digest covers the keyed hash of the subject rather than the address, so an erased event still
verifies against its seal.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)
EVENT_COLUMNS = (
    "id",
    "lead_id",
    "event_type",
    "text_version",
    "occurred_at",
    "ip",
    "user_agent",
    "source_url",
    "request_id",
    "digest",
    "txid",
)

PG_OLD_TRIGGERS = """
DROP TRIGGER consent_events_no_change ON consent_events;
DROP TRIGGER consent_events_no_truncate ON consent_events;
DROP FUNCTION consent_events_append_only();
"""
PG_NEW_TRIGGERS = (
    """
CREATE FUNCTION consent_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND NEW.subject LIKE 'erased:%' AND OLD.subject NOT LIKE 'erased:%'
       AND ({new}) IS NOT DISTINCT FROM ({old}) THEN
        RETURN NEW;  -- erasure: the subject replaced by its keyed hash, nothing else
    END IF;
    RAISE EXCEPTION 'consent_events is append-only: % refused', TG_OP;
END $$;
CREATE TRIGGER consent_events_no_change BEFORE UPDATE OR DELETE ON consent_events
    FOR EACH ROW EXECUTE FUNCTION consent_events_append_only();
CREATE TRIGGER consent_events_no_truncate BEFORE TRUNCATE ON consent_events
    FOR EACH STATEMENT EXECUTE FUNCTION consent_events_append_only();
"""
).format(
    new=", ".join(f"NEW.{c}" for c in EVENT_COLUMNS),
    old=", ".join(f"OLD.{c}" for c in EVENT_COLUMNS),
)
SQLITE_NEW_UPDATE_TRIGGER = """
CREATE TRIGGER consent_events_no_update BEFORE UPDATE ON consent_events
WHEN NOT (NEW.subject LIKE 'erased:%' AND OLD.subject NOT LIKE 'erased:%' AND {same})
BEGIN SELECT RAISE(ABORT, 'consent_events is append-only: UPDATE refused'); END
""".format(same=" AND ".join(f"NEW.{c} IS OLD.{c}" for c in EVENT_COLUMNS))
SQLITE_OLD_UPDATE_TRIGGER = """
CREATE TRIGGER consent_events_no_update BEFORE UPDATE ON consent_events
BEGIN SELECT RAISE(ABORT, 'consent_events is append-only: UPDATE refused'); END
"""


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        op.execute(PG_OLD_TRIGGERS)
        op.add_column("consent_events", sa.Column("digest", sa.String(64), nullable=True))
        op.add_column(
            "consent_events",
            sa.Column(
                "txid",
                sa.BigInteger(),
                nullable=True,
                server_default=sa.text("(pg_current_xact_id()::text::bigint)"),
            ),
        )
        op.execute(PG_NEW_TRIGGERS)
    else:
        op.execute("DROP TRIGGER consent_events_no_update")
        op.execute("DROP TRIGGER consent_events_no_delete")
        op.add_column("consent_events", sa.Column("digest", sa.String(64), nullable=True))
        op.add_column("consent_events", sa.Column("txid", sa.BigInteger(), nullable=True))
        op.execute(SQLITE_NEW_UPDATE_TRIGGER)
        op.execute(
            """CREATE TRIGGER consent_events_no_delete BEFORE DELETE ON consent_events
               BEGIN SELECT RAISE(ABORT, 'consent_events is append-only: DELETE refused'); END"""
        )

    op.create_table(
        "consent_seals",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("sealed_at", TIMESTAMP, nullable=False),
        sa.Column("first_txid", sa.BigInteger(), nullable=False),
        sa.Column("first_event_id", sa.BigInteger(), nullable=False),
        sa.Column("last_txid", sa.BigInteger(), nullable=False),
        sa.Column("last_event_id", sa.BigInteger(), nullable=False),
        sa.Column("event_count", sa.Integer(), nullable=False),
        sa.Column("events_digest", sa.String(64), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("seal_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_consent_seals"),
    )
    op.create_table(
        "export_audits",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.Column("filters", sa.JSON(), nullable=False),
        sa.Column("format", sa.String(8), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_export_audits"),
    )
    op.create_table(
        "erased_subjects",
        sa.Column("subject_hash", sa.String(64), nullable=False),
        sa.Column("erased_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("subject_hash", name="pk_erased_subjects"),
    )


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    op.drop_table("erased_subjects")
    op.drop_table("export_audits")
    op.drop_table("consent_seals")
    if postgresql:
        op.execute(PG_OLD_TRIGGERS)
        op.drop_column("consent_events", "txid")
        op.drop_column("consent_events", "digest")
        op.execute("""
CREATE FUNCTION consent_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'consent_events is append-only: % refused', TG_OP;
END $$;
CREATE TRIGGER consent_events_no_change BEFORE UPDATE OR DELETE ON consent_events
    FOR EACH ROW EXECUTE FUNCTION consent_events_append_only();
CREATE TRIGGER consent_events_no_truncate BEFORE TRUNCATE ON consent_events
    FOR EACH STATEMENT EXECUTE FUNCTION consent_events_append_only();
""")
    else:
        op.execute("DROP TRIGGER consent_events_no_update")
        op.execute("DROP TRIGGER consent_events_no_delete")
        op.drop_column("consent_events", "txid")
        op.drop_column("consent_events", "digest")
        op.execute(SQLITE_OLD_UPDATE_TRIGGER)
        op.execute(
            """CREATE TRIGGER consent_events_no_delete BEFORE DELETE ON consent_events
               BEGIN SELECT RAISE(ABORT, 'consent_events is append-only: DELETE refused'); END"""
        )
