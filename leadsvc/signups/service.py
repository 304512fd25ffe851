"""Capturing a signup: one transaction that upserts the lead, appends its consent event and
writes the outbox rows for the emails and dealer notifications it needs.

Plain Python over a session, shared by the JSON API, the HTML form and (later) jobs and the CLI.
The request talks to the database only: the relay (woken by the commit on PostgreSQL) hands the
outbox rows to rq, or the in-process drainer sends them (see `leadsvc.jobs`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app, has_app_context
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from leadsvc.commit_order import next_delivery_seq
from leadsvc.consent.service import active_text_version, consent_event
from leadsvc.db import utcnow
from leadsvc.dealers.routing import RoutingTable
from leadsvc.geo.directory import ZipInput
from leadsvc.leads.email_address import CheckedEmail
from leadsvc.leads.models import Lead
from leadsvc.outbound.subscription import (
    held_back_after_signup,
    messages_after_signup,
    signup_counts,
    status_after_signup,
)
from leadsvc.outbox.messages import add_messages
from leadsvc.request_context import ConsentContext
from leadsvc.settings import Settings

log = logging.getLogger(__name__)

#: Columns a repeat signup overwrites; everything else (id, created_at) stays. The consent
#: status is decided from the stored one after the upsert (see `status_after_signup`).
_REFRESHED_ON_REPEAT = (
    "email",
    "email_as_typed",
    "first_name",
    "last_name",
    "zip5",
    "zip4",
    "consent_text_version",
    "newsletter",
    "dealer_contact",
    "updated_at",
)
#: Attribution a repeat signup adds to but never erases (a later signup without UTM keeps them).
_KEPT_UNLESS_GIVEN = ("source", "utm", "interests")
#: Routing a repeat signup refreshes only while no dealer has acknowledged the lead.
_ROUTING = ("dealer_id", "distance_km", "routing_reason", "routing_version")


@dataclass(frozen=True, slots=True)
class Signup:
    """A validated signup, as `SignupSchema` loads it."""

    first_name: str
    last_name: str
    email: CheckedEmail
    zip: ZipInput
    source: str | None = None
    utm: dict[str, str] | None = None
    interests: list[str] | None = None
    consent_text_version: int | None = None

    @classmethod
    def from_loaded(cls, data: dict[str, Any]) -> Signup:
        return cls(**data)


@dataclass(frozen=True, slots=True)
class SignupResult:
    lead_id: int
    suggestion: str | None
    dealer_id: int | None = None


#: The columns a signup writes, bound per execution into the one cached upsert statement.
_INSERTED = (
    "email",
    "email_key",
    "email_as_typed",
    "first_name",
    "last_name",
    "zip5",
    "zip4",
    "source",
    "utm",
    "interests",
    "consent_status",
    "consent_text_version",
    "signup_count",
    "dealer_id",
    "distance_km",
    "routing_reason",
    "routing_version",
    "newsletter",
    "dealer_contact",
    "created_at",
    "updated_at",
)


@functools.cache
def _upsert_statement(dialect: str):
    """The lead upsert for `dialect`, built once: a signup only binds its values (building the
    statement per request cost more Python time than its two database round trips). A Core
    statement on the table: the ORM's bulk-insert path re-derives the statement and its cache key
    on every execution."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = Lead.__table__
    columns = table.c
    bound = {name: sa.bindparam(name, type_=columns[name].type) for name in _INSERTED}
    statement = insert(table).values({**bound, "delivery_seq": next_delivery_seq(dialect)})
    new, old = statement.excluded, columns
    refreshed: dict[str, Any] = {name: new[name] for name in _REFRESHED_ON_REPEAT}
    refreshed.update({name: sa.func.coalesce(new[name], old[name]) for name in _KEPT_UNLESS_GIVEN})
    unacknowledged = old.acknowledged_at.is_(None)
    refreshed.update(
        {name: sa.case((unacknowledged, new[name]), else_=old[name]) for name in _ROUTING}
    )
    moved = unacknowledged & old.dealer_id.is_distinct_from(new.dealer_id)
    refreshed["delivery_seq"] = sa.case((moved, new.delivery_seq), else_=old.delivery_seq)
    refreshed["signup_count"] = old.signup_count + 1
    return statement.on_conflict_do_update(
        index_elements=[columns.email_key], set_=refreshed
    ).returning(
        columns.id,
        columns.signup_count,
        columns.consent_status,
        columns.dealer_id,
        columns.bounced_at,
        # Whether the dealer notices include a webhook, read in the same round trip (written out:
        # SQLAlchemy does not correlate a subquery in RETURNING with the row).
        sa.literal_column(
            "(SELECT dealers.webhook_url FROM dealers WHERE dealers.id = leads.dealer_id)",
            sa.String,
        ).label("dealer_webhook_url"),
        *signup_counts(
            sa.literal_column("leads.id"),
            sa.literal_column("leads.dealer_id"),
            sa.bindparam("confirm_since", type_=columns.created_at.type),
        ),
    )


def _upsert_lead(session: Session, values: dict[str, Any]) -> sa.Row:
    """Insert the lead or refresh the existing one with the same email key, in one statement.

    Returns the lead's id, signup count (1: just inserted), stored consent status and dealer;
    the row stays locked (PostgreSQL) or the database write-locked (SQLite) until the commit.
    """
    connection = session.connection()
    return connection.execute(_upsert_statement(connection.dialect.name), values).one()


def _consent_text_version(session: Session, shown: int | None) -> int:
    return shown if shown is not None else active_text_version(session)


def capture_signup(
    session: Session,
    signup: Signup,
    context: ConsentContext,
    routes: RoutingTable,
    *,
    settings: Settings | None = None,
) -> SignupResult:
    """Store the routed lead, its consent event and its outbox rows, and commit; the same for
    new and known emails.

    The lead goes to the dealer `routes` names for its ZIP, or to the unassigned pool. `settings`
    (default: the current app's) says whether double opt-in is on.
    """
    if settings is None and has_app_context():
        settings = current_app.config["LEADSVC_SETTINGS"]
    route = routes.route_for_zip(signup.zip.zip5)
    lead_id = _retried(
        session, lambda: _write_signup(session, signup, context, routes, route, settings)
    )
    session.commit()
    routing = route.reason if route else "unassigned"
    log.info("signup stored", extra={"lead_id": lead_id, "routing": routing})
    return SignupResult(
        lead_id=lead_id,
        suggestion=signup.email.suggestion,
        dealer_id=route.dealer_id if route else None,
    )


def _retried(session: Session, write: Callable[[], int | None]) -> int | None:
    """`write()`, once more on a new connection if the first failed on a pooled connection
    PostgreSQL had closed (a restart, a failover). Such a failure comes at the connection's first
    use, before anything is written; the commit itself is never retried."""
    for retry in (False, True):
        try:
            return write()
        except DBAPIError as error:
            session.rollback()
            if retry or not error.connection_invalidated:
                raise
            log.warning("database connection lost before the signup was written: retrying once")
    raise AssertionError("unreachable")


def _lead_values(
    signup: Signup, routes: RoutingTable, route, status: str, text_version: int
) -> dict[str, Any]:
    return {
        "email": signup.email.normalized,
        "email_key": signup.email.key,
        "email_as_typed": signup.email.as_typed,
        "first_name": signup.first_name,
        "last_name": signup.last_name,
        "zip5": signup.zip.zip5,
        "zip4": signup.zip.zip4,
        "source": signup.source,
        "utm": signup.utm,
        "interests": signup.interests,
        "consent_status": status,
        "consent_text_version": text_version,
        "dealer_id": route.dealer_id if route else None,
        "distance_km": route.distance_km if route else None,
        "routing_reason": route.reason if route else "unassigned",
        "routing_version": routes.version,
        # The form's notice covers both: a signup (again) turns both on.
        "newsletter": True,
        "dealer_contact": True,
    }


def _write_signup(
    session: Session,
    signup: Signup,
    context: ConsentContext,
    routes: RoutingTable,
    route,
    settings: Settings | None,
) -> int:
    """The signup's statements, up to (not including) the commit; returns the lead id."""
    double_opt_in = settings.double_opt_in if settings else False
    text_version = _consent_text_version(session, signup.consent_text_version)
    now = utcnow()
    values = _lead_values(
        signup, routes, route, status_after_signup(None, double_opt_in), text_version
    )
    stored = _upsert_lead(
        session,
        {
            **values,
            "signup_count": 1,
            "created_at": now,
            "updated_at": now,
            "confirm_since": now - timedelta(days=1),
        },
    )
    lead_id = stored.id
    previous = None if stored.signup_count == 1 else stored.consent_status
    if stored.bounced_at is not None:
        # Accepted and recorded like any signup; the lead stays flagged bounced (the dealer
        # sees it) and its emails are held back by the senders (see outbound.delivery).
        log.info("signup from an address whose mail bounced: lead %d stays suppressed", lead_id)
    status = status_after_signup(previous, double_opt_in)
    if status != stored.consent_status:
        session.connection().execute(
            sa.update(Lead.__table__).where(Lead.id == lead_id).values(consent_status=status)
        )
    event = consent_event(
        lead_id=lead_id,
        subject=signup.email.normalized,
        event_type="given",
        text_version=text_version,
        context=context,
    )
    messages, held_back = _rows_after_signup(session, stored, previous, status, settings)
    # The event and the rows: one statement.
    add_messages(session, messages, together_with=event, held_back=held_back)
    return lead_id


def _rows_after_signup(
    session: Session, stored: sa.Row, previous: str | None, status: str, settings
):
    """The outbox rows the signup sends and those it holds back (see `held_back_after_signup`)."""
    confirm_limit = settings.confirm_emails_per_day if settings else 3
    messages = messages_after_signup(
        session,
        stored.id,
        previous=previous,
        status=status,
        dealer_id=stored.dealer_id,
        confirm_emails_per_day=confirm_limit,
        dealer_webhook_url=stored.dealer_webhook_url,
        dealer_told=stored.dealer_told,
        confirmations_today=stored.confirmations_today,
    )
    held_back = held_back_after_signup(
        messages,
        stored.id,
        status=status,
        dealer_id=stored.dealer_id,
        dealer_webhook_url=stored.dealer_webhook_url,
        confirm_emails_per_day=confirm_limit,
    )
    return messages, held_back
