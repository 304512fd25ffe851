"""Wake the dispatchers: on PostgreSQL, every transaction that makes an outbox row pending
notifies the channel `leadsvc_outbox` when it commits (one notification per transaction: equal
notifications in one transaction are delivered once). Rows already queued in rq before this
revision stay `pending` in the old sense only until the relay's first pass hands them on.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE FUNCTION leadsvc_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('leadsvc_outbox', '');
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER outbox_pending_notify
        AFTER INSERT OR UPDATE OF status ON outbox
        FOR EACH ROW WHEN (NEW.status = 'pending')
        EXECUTE FUNCTION leadsvc_outbox_notify()
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER outbox_pending_notify ON outbox")
    op.execute("DROP FUNCTION leadsvc_outbox_notify()")
