"""A signup's one write path: the lead, its consent event and its outbox rows in one
transaction, the same on PostgreSQL and SQLite."""

import json

import pytest
import sqlalchemy as sa

from leadsvc.consent.chain import digest_of, subject_key
from leadsvc.consent.models import ConsentEvent
from leadsvc.dealers import routing
from leadsvc.leads.models import Lead
from tests.factories import valid_signup
from tests.jobs.support import add_dealer, kinds_and_statuses

on_postgresql = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture(autouse=True)
def routes_reload_at_once(monkeypatch):
    monkeypatch.setattr(routing, "REFRESH_SECONDS", 0.0)


@on_postgresql
def test_postgresql_writes_the_digest_python_verifies(app, client, session):
    body = valid_signup(email="Zoë.O'Brien@example.com", source='https://x.example/"q"?ü=1')
    reply = client.post(
        "/api/v1/signups", json=body, headers={"User-Agent": 'Browser "lead_id": 0, ünïcode'}
    )
    assert reply.status_code == 202
    event = session.scalars(sa.select(ConsentEvent)).one()
    assert event.user_agent == 'Browser "lead_id": 0, ünïcode'
    assert event.digest == digest_of(event, subject_key(app.config["SECRET_KEY"]))


@on_postgresql
def test_a_failure_inside_the_statement_leaves_nothing(app, client, session):
    """The lead, its event and its outbox rows are one statement: an outbox row the database
    refuses takes the lead and the consent event with it."""
    session.execute(
        sa.text("""
        CREATE FUNCTION refuse_outbox() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN RAISE EXCEPTION 'outbox refused'; END $$;
        CREATE TRIGGER refuse_outbox BEFORE INSERT ON outbox
        FOR EACH ROW EXECUTE FUNCTION refuse_outbox();
    """)
    )
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
