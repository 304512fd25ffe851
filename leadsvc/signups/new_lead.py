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

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from psycopg.types.json import Jsonb

from leadsvc.held_connection import run_held
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
    out in autocommit (`leadsvc.held_connection`): SQLAlchemy's connection, execution context
    and result wrapping, and a pool checkout and return per signup, cost more Python time than
    the round trip. If the driver raises, the statement is run once more through SQLAlchemy,
    which reports the error as everywhere else (a lost connection invalidates the pool:
    `connection_invalidated`); a statement that failed wrote nothing, so running it again is
    safe.
    """
    params = {name: getattr(lead, name) for name in NewLead.__slots__}
    params["utm"] = None if lead.utm is None else Jsonb(lead.utm)
    params["interests"] = None if lead.interests is None else Jsonb(lead.interests)
    params["kinds"] = ",".join(lead.kinds)  # text, not an array: psycopg's list dumper cost more
    rows = run_held(engine, NEW_LEAD_SQL, params)
    if rows is None:  # the driver raised: SQLAlchemy runs it again, and reports what fails
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            rows = connection.exec_driver_sql(NEW_LEAD_SQL, params).all()
    if not rows:
        return None
    messages = [QueuedRow(outbox_id, kind, 1) for _, outbox_id, kind in rows if outbox_id]
    return rows[0][0], messages
