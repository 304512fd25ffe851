"""A signup of an address already known makes the round trips a new one makes, so the answer's
timing does not tell an outsider whether a person is subscribed by a query more or less
(`bench/signup_timing.py` measures the times in interleaved pairs)."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from leadsvc.dealers import routing
from leadsvc.dealers.directory import import_dealers
from leadsvc.extensions import db
from tests.factories import dealer_csv, dealer_line, valid_signup


@pytest.fixture
def dealer(session, monkeypatch):
    """NY1 with a webhook, so new leads get every dealer notice (ZIP 10001 routes to it)."""
    monkeypatch.setattr(routing, "REFRESH_SECONDS", 0.0)
    line = dealer_line(
        "NY1", "10019", webhook_url="https://crm.dealer.example/hook", webhook_secret="s" * 24
    )
    assert import_dealers(session, dealer_csv(line)).applied


def sign_up(client, email: str) -> float:
    started = time.perf_counter()
    reply = client.post("/api/v1/signups", json=valid_signup(email=email, zip="10001"))
    elapsed = (time.perf_counter() - started) * 1000
    assert reply.status_code == 202, reply.get_json()
    return elapsed


def statements_of(app, client, email: str) -> list[str]:
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement.split()[0].upper())

    engine = db.engine(app)
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        sign_up(client, email)
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    return seen


ON_POSTGRESQL = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@ON_POSTGRESQL
def test_a_known_address_runs_the_same_statements_as_a_new_one(app, client, dealer):
    """One SELECT, the upsert, and one statement writing the consent event with the outbox rows
    (a WITH ... INSERT; a plain INSERT for a known lead whose dealer has it). SQLite, embedded
    and in-process, writes the event and the rows in two statements: no network round trip to
    time there."""
    sign_up(client, "known@example.com")
    sign_up(client, "warm@example.com")  # caches (consent text, routing table) filled
    new = statements_of(app, client, "new@example.com")
    known = statements_of(app, client, "known@example.com")
    assert len(known) == len(new) == 3  # round trips
    assert known[:2] == new[:2] == ["SELECT", "INSERT"]
    assert known == new  # the same statements, a WITH writing the event and the rows


def outbox_rows(session, email: str) -> list[tuple[str, str, str | None]]:
    return session.execute(
        sa.text(
            "SELECT o.kind, o.status, o.last_error FROM outbox o"
            " JOIN leads l ON l.id = o.lead_id WHERE l.email = :email ORDER BY o.id"
        ),
        {"email": email},
    ).all()


def test_a_known_address_writes_as_many_rows_as_a_new_one_and_sends_none(client, session, dealer):
    """A repeat signup of a subscribed address whose dealer has it writes the rows a new lead
    gets, as `skipped` with the reason, so both do the same work; none of them is ever sent."""
    sign_up(client, "twice@example.com")
    first = outbox_rows(session, "twice@example.com")
    assert [(kind, status) for kind, status, _ in first] == [
        ("welcome_email", "pending"),
        ("dealer_email", "pending"),
        ("dealer_webhook", "pending"),
    ]
    sign_up(client, "twice@example.com")
    second = outbox_rows(session, "twice@example.com")[3:]
    assert second == [
        ("welcome_email", "skipped", "not sent: the person was welcomed before"),
        ("dealer_email", "skipped", "not sent: the dealer has this lead already"),
        ("dealer_webhook", "skipped", "not sent: the dealer has this lead already"),
    ]
    pending = sa.text("SELECT count(*) FROM outbox WHERE status = 'pending'")
    assert session.execute(pending).scalar_one() == 3  # only the first signup's rows go out
