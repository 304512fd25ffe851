"""A new person's signup on PostgreSQL, written in one statement.

Most signups are from addresses the service has not seen. For those the whole write (the lead,
its consent event, its outbox rows) is one INSERT with data-modifying CTEs, sent on an
autocommit connection: one statement is one transaction, so it is all or nothing, and it costs
one round trip instead of five (BEGIN, three statements, COMMIT) and none of the ORM's work.

The lead is inserted `ON CONFLICT DO NOTHING`: if the address is known, the statement writes
nothing at all and returns no row, and the caller runs the general signup transaction (which
refreshes the lead and decides from its stored consent state; see `leadsvc.signups.service`).

What the statement writes is decided by the same functions as the general path: the consent
status by `status_after_signup`, the outbox rows by `new_lead_kinds`, the event digest by
`leadsvc.consent.chain` (PostgreSQL fills the lead id into the digested text).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from datetime import datetime

import psycopg
import sqlalchemy as sa
from psycopg.types.json import Jsonb

from leadsvc.jobs.outbox import DEALER_KINDS, DEALER_WEBHOOK, PENDING, QueuedRow

#: The statement (psycopg's named parameters). The dealer's webhook URL is read with the lead,
#: so `dealer_webhook` is written only for a dealer that has one.
NEW_LEAD_SQL = f"""
WITH lead AS (
    INSERT INTO leads (
        email, email_key, email_as_typed, first_name, last_name, zip5, zip4, source, utm,
        interests, consent_status, consent_text_version, signup_count, dealer_id, distance_km,
        routing_reason, routing_version, delivery_seq, created_at, updated_at
    ) VALUES (
        %(email)s, %(email_key)s, %(email_as_typed)s, %(first_name)s, %(last_name)s, %(zip5)s,
        %(zip4)s, %(source)s, %(utm)s, %(interests)s, %(consent_status)s, %(text_version)s, 1,
        %(dealer_id)s, %(distance_km)s, %(routing_reason)s, %(routing_version)s,
        pg_current_xact_id()::text::bigint, %(now)s, %(now)s
    )
    ON CONFLICT (email_key) DO NOTHING
    RETURNING id, dealer_id,
        (SELECT dealers.webhook_url FROM dealers WHERE dealers.id = leads.dealer_id) AS webhook_url
), event AS (
    INSERT INTO consent_events (
        lead_id, subject, event_type, text_version, occurred_at, ip, user_agent, source_url,
        request_id, digest
    )
    SELECT id, %(email)s, 'given', %(text_version)s, %(now)s, %(ip)s, %(user_agent)s,
        %(source_url)s, %(request_id)s,
        encode(sha256(convert_to(%(digest_head)s || id::text || %(digest_tail)s, 'UTF8')), 'hex')
    FROM lead
), message AS (
    INSERT INTO outbox (
        kind, lead_id, dealer_id, payload, status, attempts, generation, created_at, updated_at
    )
    SELECT kind, lead.id, dealer.id,
        jsonb_strip_nulls(jsonb_build_object('lead_id', lead.id, 'dealer_id', dealer.id)),
        '{PENDING}', 0, 1, %(now)s, %(now)s
    FROM lead
    CROSS JOIN unnest(string_to_array(%(kinds)s, ',')) AS kind
    CROSS JOIN LATERAL (
        SELECT CASE WHEN kind IN {tuple(DEALER_KINDS)!r} THEN lead.dealer_id END AS id
    ) AS dealer
    WHERE kind <> '{DEALER_WEBHOOK}' OR lead.webhook_url IS NOT NULL
    RETURNING id, kind
)
SELECT lead.id, message.id, message.kind FROM lead LEFT JOIN message ON true
"""


@dataclass(frozen=True, slots=True)
class NewLead:
    """The values of a new lead's row, its consent event and its outbox rows."""

    email: str
    email_key: str
    email_as_typed: str
    first_name: str
    last_name: str
    zip5: str
    zip4: str | None
    source: str | None
    utm: dict[str, str] | None
    interests: list[str] | None
    consent_status: str
    text_version: int
    dealer_id: int | None
    distance_km: float | None
    routing_reason: str
    routing_version: int
    now: datetime
    ip: str | None
    user_agent: str | None
    source_url: str | None
    request_id: str | None
    #: The consent event's digested text before and after the lead id.
    digest_head: str
    digest_tail: str
    #: Outbox kinds (`new_lead_kinds`).
    kinds: list[str]


def insert_new_lead(engine: sa.Engine, lead: NewLead) -> tuple[int, list[QueuedRow]] | None:
    """Write the lead, its consent event and its outbox rows in one autocommitted statement (its
    own transaction); returns the lead id and the outbox rows, or None (nothing written) if a lead
    with this address exists.

    The statement goes straight to the driver, on a pooled connection this thread keeps checked
    out in autocommit (`_held_cursor`): SQLAlchemy's connection, execution context and result
    wrapping, and a pool checkout and return per signup, cost more Python time than the round
    trip. If the driver raises, the statement is run once more through SQLAlchemy, which reports
    the error as everywhere else (a lost connection invalidates the pool:
    `connection_invalidated`); a statement that failed wrote nothing, so running it again is
    safe.
    """
    params = {name: getattr(lead, name) for name in NewLead.__slots__}
    params["utm"] = None if lead.utm is None else Jsonb(lead.utm)
    params["interests"] = None if lead.interests is None else Jsonb(lead.interests)
    params["kinds"] = ",".join(lead.kinds)  # text, not an array: psycopg's list dumper cost more
    rows = _on_held_connection(engine, params)
    if rows is None:  # the driver raised: SQLAlchemy runs it again, and reports what fails
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            rows = connection.exec_driver_sql(NEW_LEAD_SQL, params).all()
    if not rows:
        return None
    messages = [QueuedRow(outbox_id, kind, 1) for _, outbox_id, kind in rows if outbox_id]
    return rows[0][0], messages


class _Held(threading.local):
    """This thread's connection for the statement: a pooled connection it keeps checked out, in
    autocommit, from one signup to the next; the pool it came from, and the process."""

    connection = None
    cursor = None
    pool = None
    pid = None


_held = _Held()
#: Connections a forked child found held by its parent's thread: never used or closed here (a
#: close would end the parent's session on the shared socket), and kept from being collected.
_inherited: list = []


def _held_cursor(engine: sa.Engine) -> psycopg.Cursor:
    """The cursor of the pooled connection this thread keeps for `engine`, in autocommit.

    A thread holds at most one: one for another engine, or for this engine's pool before
    `engine.dispose()` replaced it, is closed first. Each gunicorn thread thus keeps
    one of the engine's connections (pool_size 5 plus 5 overflow, against 4 threads); other
    statements share the rest. Raises psycopg's error if no connection can be had (the pool does
    not wrap a failed connect).
    """
    held = _held
    if held.connection is not None and held.pid != os.getpid():
        _inherited.append(held.connection)
        held.connection = None
    if held.connection is not None and held.pool is not engine.pool:
        _close(held)  # its pool was disposed, or belongs to another engine: keep nothing open
    if held.connection is None:
        pooled = engine.raw_connection()
        try:
            pooled.driver_connection.autocommit = True
        except psycopg.Error:
            _discard(pooled)
            raise
        held.connection, held.pool, held.pid = pooled, engine.pool, os.getpid()
        held.cursor = pooled.driver_connection.cursor()  # reused: one per statement cost ~5 us
    return held.cursor


def _discard(pooled) -> None:
    pooled.invalidate()  # closes the driver's connection; the pool forgets it
    pooled.close()


def _close(held: _Held) -> None:
    pooled, held.connection = held.connection, None
    _discard(pooled)


def _give_back(held: _Held) -> None:
    pooled, held.connection = held.connection, None
    try:
        pooled.driver_connection.autocommit = False
    except psycopg.Error:
        pooled.invalidate()
    pooled.close()


def _on_held_connection(engine: sa.Engine, params: dict) -> list | None:
    """The statement's rows, run on this thread's held connection; None if psycopg raised (no
    connection to be had, a dead one, or the statement failed: nothing written). A connection
    that raised is not kept: a broken one is closed, any other goes back to the pool."""
    try:
        cursor = _held_cursor(engine)
    except psycopg.Error:
        return None
    try:
        return cursor.execute(NEW_LEAD_SQL, params).fetchall()
    except psycopg.Error:
        if cursor.connection.broken:
            _close(_held)
        else:
            _give_back(_held)
        return None
