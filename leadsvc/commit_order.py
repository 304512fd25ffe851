"""The order in which a dealer receives its leads: a feed position that pages cannot skip.

A lead's `delivery_seq` is set when it is routed to a dealer (at signup, on a move). On PostgreSQL
it is the id of the routing transaction, and the feed only serves leads whose transaction is
older than every transaction still running (`pg_snapshot_xmin`), so a lead that commits late
cannot land behind a cursor a dealer already holds. SQLite has one writer at a time, so a
counter taken inside the write transaction is already in commit order.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session


def next_delivery_seq(dialect: str):
    """A SQL expression for the feed position of a lead routed by the current transaction."""
    if dialect == "postgresql":
        return sa.literal_column("(pg_current_xact_id()::text::bigint)", sa.BigInteger)
    return (
        sa.text("(SELECT coalesce(max(delivery_seq), 0) + 1 FROM leads)")
        .columns(sa.column("seq", sa.BigInteger))
        .scalar_subquery()
    )


def settled_below(session: Session) -> int | None:
    """Feed positions below this are final (no transaction can still add one); None: all are."""
    if session.get_bind().dialect.name != "postgresql":
        return None
    return session.scalar(sa.text("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"))
