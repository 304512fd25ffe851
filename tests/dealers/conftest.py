"""Dealers, keys and leads for the dealer and admin API tests.

NY1 (ZIP 10019) gets signups from 10001, LA1 (90036) those from 90210; 09001 (military, no map
position) stays unassigned. Leads are made through the signup API, as people make them.
"""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from leadsvc.auth.keys import create_key
from leadsvc.dealers import routing
from leadsvc.dealers.directory import import_dealers
from leadsvc.dealers.models import Dealer
from leadsvc.extensions import db
from leadsvc.leads.models import Lead
from tests.factories import dealer_csv, dealer_line, valid_signup

FEED = "/api/v1/dealer/leads"
ACK = "/api/v1/dealer/leads/ack"
UNASSIGNED = "/api/v1/admin/leads/unassigned"
NY_ZIP, LA_ZIP, MILITARY_ZIP = "10001", "90210", "09001"


@pytest.fixture
def dealer_ids(session, monkeypatch) -> dict[str, int]:
    monkeypatch.setattr(routing, "REFRESH_SECONDS", 0.0)  # see each rebuild at once
    report = import_dealers(
        session,
        dealer_csv(
            dealer_line("NY1", "10019"),
            dealer_line("LA1", "90036", state="CA"),
        ),
    )
    assert report.applied
    return dict(session.execute(sa.select(Dealer.code, Dealer.id)).all())


@pytest.fixture
def keys(session, dealer_ids) -> dict[str, dict[str, str]]:
    """Authorization headers: a key for each dealer, and an admin and a compliance key."""
    made = {
        "NY1": create_key(session, "dealer", "NY1")[1],
        "LA1": create_key(session, "dealer", "la1")[1],
        "admin": create_key(session, "admin")[1],
        "compliance": create_key(session, "compliance")[1],
    }
    return {who: {"Authorization": f"Bearer {key}"} for who, key in made.items()}


def settle(app, timeout: float = 10.0) -> None:
    """Wait until every committed lead's feed position is below the PostgreSQL horizon.

    The horizon is the oldest transaction running anywhere on the server, so another database's
    open transaction (other test runs share the server) can hold a fresh lead back for a moment;
    the feed then serves it a moment later, after any cursor handed out meanwhile. Tests that
    expect a lead at once wait for that moment first. (SQLite has no horizon.)
    """
    engine = db.engine(app)
    if engine.dialect.name != "postgresql":
        return
    deadline = time.monotonic() + timeout
    with engine.connect() as connection:
        while not connection.execute(
            sa.text(
                "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
                " > coalesce((SELECT max(delivery_seq) FROM leads), 0)"
            )
        ).scalar_one():
            connection.rollback()
            assert time.monotonic() < deadline, "a transaction held the feed horizon too long"
            time.sleep(0.01)


def sign_up(
    client, session, email: str, zip5: str = NY_ZIP, *, settled: bool = True, **fields
) -> int:
    """A signup through the API; returns the id of the lead it stored."""
    reply = client.post("/api/v1/signups", json=valid_signup(email=email, zip=zip5, **fields))
    assert reply.status_code == 202, reply.get_json()
    if settled:
        settle(client.application)
    session.expire_all()
    return session.scalar(sa.select(Lead.id).where(Lead.email_key == email.lower()))


def set_lead(session, lead_id: int, **values) -> None:
    """Change a stored lead directly (flows other engineers build, or values the API refuses)."""
    session.execute(sa.update(Lead).where(Lead.id == lead_id).values(**values))
    session.commit()


def feed(client, headers, **params):
    """One page of the feed as JSON: (reply, ids)."""
    reply = client.get(FEED, headers=headers, query_string=params)
    assert reply.status_code == 200, reply.get_json()
    return reply, [lead["id"] for lead in reply.get_json()["leads"]]


def page_through(client, headers, *, limit: int, cursor: str | None = None, **params):
    """Every page from `cursor` until a page shorter than `limit`: (pages of ids, last cursor)."""
    pages = []
    while True:
        query = {"limit": limit, **params, **({"cursor": cursor} if cursor else {})}
        reply, ids = feed(client, headers, **query)
        pages.append(ids)
        cursor = reply.get_json()["next_cursor"]
        if len(ids) < limit:
            return pages, cursor
