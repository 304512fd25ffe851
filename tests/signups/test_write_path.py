"""A new address on PostgreSQL is written in one statement; a known one, and every signup on
SQLite, in the general transaction. Both must store the same thing."""

import hashlib
import json
import time
from datetime import UTC, datetime

import psycopg
import pytest
import sqlalchemy as sa

from leadsvc.consent.chain import digest_around_lead_id, digest_of, event_digest, subject_key
from leadsvc.consent.models import ConsentEvent
from leadsvc.dealers import routing
from leadsvc.signups.models import Lead
from tests.factories import valid_signup
from tests.jobs.support import add_dealer, kinds_and_statuses

on_postgresql = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture(autouse=True)
def routes_reload_at_once(monkeypatch):
    monkeypatch.setattr(routing, "REFRESH_SECONDS", 0.0)


def statements_of(monkeypatch, action) -> list[str]:
    """The SQL statements `action()` sends to PostgreSQL (through SQLAlchemy or straight to the
    driver: every statement goes through psycopg's cursor)."""
    sent: list[str] = []
    execute = psycopg.Cursor.execute

    def note(cursor, query, *args, **kwargs):
        sent.append(" ".join(str(query).split())[:60])
        return execute(cursor, query, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(psycopg.Cursor, "execute", note)
        action()
    return sent


@pytest.mark.parametrize("lead_id", [1, 42, 9_876_543_210])
def test_the_digest_cut_around_the_lead_id_is_the_events_digest(lead_id):
    event = {
        "subject": "Zoë.O'Brien@Exämple.com", "event_type": "given", "text_version": 3,
        "occurred_at": datetime(2026, 11, 24, 7, 5, 1, 123456, tzinfo=UTC),
        "ip": "2001:db8::1", "user_agent": 'Mozilla/5.0 "lead_id": 0, "occurred_at": \u202e',
        "source_url": "https://www.miniusa.com/?q=%22lead_id%22", "request_id": None,
    }  # fmt: skip
    key = b"k" * 32
    head, tail = digest_around_lead_id(**event, key=key)
    assert head.isascii() and tail.isascii()
    joined = hashlib.sha256(f"{head}{lead_id}{tail}".encode()).hexdigest()
    assert joined == event_digest(lead_id=lead_id, **event, key=key)


@on_postgresql
def test_a_new_address_is_one_statement_and_a_known_one_the_transaction(
    app, client, session, monkeypatch
):
    add_dealer(session, code="NY1", zip5="10019", webhook_url="https://dealer.example/hook")
    client.post("/api/v1/signups", json=valid_signup(email="warm@example.com"))  # caches warm
    monkeypatch.setattr(routing, "REFRESH_SECONDS", 60.0)  # the routing table is not re-checked
    new = statements_of(monkeypatch, lambda: client.post("/api/v1/signups", json=valid_signup()))
    assert len(new) == 1 and new[0].startswith("WITH lead AS ( INSERT INTO leads")
    known = statements_of(monkeypatch, lambda: client.post("/api/v1/signups",
                                                           json=valid_signup()))
    assert new[0] in known and len(known) > 2  # tried first, then the upsert and what follows
    session.expire_all()
    lead = session.scalars(sa.select(Lead).where(Lead.email_key == "jane.doe@example.com")).one()
    assert lead.signup_count == 2
    events = session.scalars(
        sa.select(ConsentEvent).where(ConsentEvent.lead_id == lead.id).order_by(ConsentEvent.id)
    ).all()
    assert [event.event_type for event in events] == ["given", "given"]


def backend_pids(session) -> set[int]:
    return set(session.scalars(sa.text(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = 'leadsvc' AND pid <> pg_backend_pid()"
    )))  # fmt: skip


@on_postgresql
def test_a_thread_keeps_one_connection_for_new_leads_and_gives_it_back_on_dispose(
    app, client, session
):
    """New leads from one thread go over one connection it keeps checked out from the pool (no
    checkout and return per signup); `engine.dispose()` (gunicorn's post_fork, a new pool) makes
    the thread leave it and take one from the new pool."""
    from leadsvc.extensions import db
    from leadsvc.held_connection import _held

    engine = db.engine(app)
    client.post("/api/v1/signups", json=valid_signup(email="warm@example.com"))
    first = _held.connection.driver_connection.info.backend_pid
    for n in range(3):
        reply = client.post("/api/v1/signups", json=valid_signup(email=f"p{n}@example.com"))
        assert reply.status_code == 202
        assert _held.connection.driver_connection.info.backend_pid == first
    assert engine.pool.checkedout() == 1
    engine.dispose()
    reply = client.post("/api/v1/signups", json=valid_signup(email="after@example.com"))
    assert reply.status_code == 202
    second = _held.connection.driver_connection.info.backend_pid
    assert second != first and _held.pool is engine.pool and engine.pool.checkedout() == 1
    deadline = time.monotonic() + 5
    while first in backend_pids(session) and time.monotonic() < deadline:
        time.sleep(0.05)  # the server ends a closed connection's backend on its own time
    assert first not in backend_pids(session)  # closed, not left open in the old pool
    assert session.scalar(sa.select(sa.func.count()).select_from(Lead)) == 5


@on_postgresql
def test_postgresql_writes_the_digest_python_verifies(app, client, session):
    body = valid_signup(email="Zoë.O'Brien@example.com", source='https://x.example/"q"?ü=1')
    reply = client.post("/api/v1/signups", json=body,
                        headers={"User-Agent": 'Browser "lead_id": 0, ünïcode'})  # fmt: skip
    assert reply.status_code == 202
    event = session.scalars(sa.select(ConsentEvent)).one()
    assert event.user_agent == 'Browser "lead_id": 0, ünïcode'
    assert event.digest == digest_of(event, subject_key(app.config["SECRET_KEY"]))


@on_postgresql
def test_a_failure_inside_the_statement_leaves_nothing(app, client, session):
    """The lead, its event and its outbox rows are one statement: an outbox row the database
    refuses takes the lead and the consent event with it."""
    session.execute(sa.text("""
        CREATE FUNCTION refuse_outbox() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN RAISE EXCEPTION 'outbox refused'; END $$;
        CREATE TRIGGER refuse_outbox BEFORE INSERT ON outbox
        FOR EACH ROW EXECUTE FUNCTION refuse_outbox();
    """))  # fmt: skip
    session.commit()
    try:
        reply = client.post("/api/v1/signups", json=valid_signup())
        assert reply.status_code == 500
    finally:
        session.execute(sa.text("DROP TRIGGER refuse_outbox ON outbox"))
        session.execute(sa.text("DROP FUNCTION refuse_outbox()"))
        session.commit()
    assert session.scalar(sa.select(sa.func.count()).select_from(Lead)) == 0
    assert session.scalar(sa.select(sa.func.count()).select_from(ConsentEvent)) == 0
    assert kinds_and_statuses(session) == []


@pytest.mark.parametrize(
    ("double_opt_in", "webhook", "zip5", "expected"),
    [
        (False, True, "10001", ["welcome_email", "dealer_email", "dealer_webhook"]),
        (False, False, "10001", ["welcome_email", "dealer_email"]),
        (False, True, "09001", ["welcome_email"]),  # APO ZIP: unassigned
        (True, True, "10001", ["confirm_email"]),
    ],
)
def test_a_new_lead_gets_the_same_outbox_rows_on_either_database(
    make_app, session, double_opt_in, webhook, zip5, expected
):
    app = make_app(double_opt_in=double_opt_in)
    url = "https://dealer.example/hook" if webhook else None
    dealer = add_dealer(session, code="NY1", zip5="10019", webhook_url=url)
    reply = app.test_client().post("/api/v1/signups", json=valid_signup(zip=zip5))
    assert reply.status_code == 202
    assert [kind for kind, _ in kinds_and_statuses(session)] == expected
    assert {status for _, status in kinds_and_statuses(session)} == {"pending"}
    lead = session.scalars(sa.select(Lead)).one()
    assert lead.consent_status == ("pending" if double_opt_in else "given")
    assert lead.dealer_id == (None if zip5 == "09001" else dealer.id)
    payloads = session.execute(sa.text("SELECT kind, payload FROM outbox ORDER BY id")).all()
    for kind, payload in payloads:
        payload = payload if isinstance(payload, dict) else json.loads(payload)
        with_dealer = {"dealer_id": dealer.id} if kind.startswith("dealer_") else {}
        assert payload == {"lead_id": lead.id, **with_dealer}
