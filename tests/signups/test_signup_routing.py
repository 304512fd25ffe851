"""Every accepted lead carries its routing: dealer, distance, reason, routing-table version."""

import pytest
import sqlalchemy as sa

from leadsvc.db import utcnow
from leadsvc.dealers import routing
from leadsvc.dealers.directory import assign_territories, deactivate_dealer, import_dealers
from leadsvc.dealers.models import Dealer
from leadsvc.leads.models import Lead
from tests.factories import dealer_csv, dealer_line, valid_signup


@pytest.fixture
def dealer_ids(session, monkeypatch):
    monkeypatch.setattr(routing, "REFRESH_SECONDS", 0.0)  # see each rebuild at once
    report = import_dealers(
        session,
        dealer_csv(
            dealer_line("NY1", "10019"),
            dealer_line("NJ1", "07030", state="NJ"),
            dealer_line("LA1", "90036", state="CA"),
        ),
    )
    assert report.applied
    return dict(session.execute(sa.select(Dealer.code, Dealer.id)).all())


def lead_for(session, email="jane.doe@example.com") -> Lead:
    session.expire_all()
    return session.scalars(sa.select(Lead).where(Lead.email_key == email)).one()


def test_lead_goes_to_the_nearest_dealer(client, session, dealer_ids):
    assert client.post("/api/v1/signups", json=valid_signup(zip="90210")).status_code == 202
    lead = lead_for(session)
    assert (lead.dealer_id, lead.routing_reason, lead.routing_version) == (
        dealer_ids["LA1"],
        "nearest",
        1,
    )
    assert lead.distance_km == pytest.approx(
        session.execute(
            sa.text("SELECT distance_km FROM zip_routes WHERE zip5 = '90210'")
        ).scalar_one()
    )


def test_territory_reason_is_recorded(client, session, dealer_ids):
    assign_territories(session, "zip,dealer_code\n10001,NJ1\n")
    client.post("/api/v1/signups", json=valid_signup(zip="10001"))
    lead = lead_for(session)
    assert (lead.dealer_id, lead.routing_reason, lead.routing_version) == (
        dealer_ids["NJ1"],
        "territory",
        2,
    )


def test_military_zip_is_accepted_into_the_unassigned_pool(app, client, session, dealer_ids):
    reply = client.post("/api/v1/signups", json=valid_signup(zip="09001"))
    assert reply.status_code == 202 and reply.get_json()["status"] == "received"
    lead = lead_for(session)
    assert (lead.dealer_id, lead.routing_reason, lead.distance_km) == (None, "unassigned", None)
    pool = app.test_cli_runner().invoke(args=["routes", "unassigned"])
    assert "09001 1" in pool.output and "1 unassigned leads" in pool.output


def test_without_any_dealer_leads_are_kept_unassigned(client, session):
    assert client.post("/api/v1/signups", json=valid_signup()).status_code == 202
    lead = lead_for(session)
    assert (lead.dealer_id, lead.routing_reason) == (None, "unassigned")


def test_a_rebuild_reaches_the_running_app_without_restart(client, session, dealer_ids):
    client.post("/api/v1/signups", json=valid_signup(email="first@example.com", zip="10001"))
    deactivate_dealer(session, "NY1")
    client.post("/api/v1/signups", json=valid_signup(email="second@example.com", zip="10001"))
    assert lead_for(session, "second@example.com").dealer_id == dealer_ids["NJ1"]
    assert lead_for(session, "second@example.com").routing_version == 2
    # the first lead was not acknowledged, so the deactivation moved it too
    assert lead_for(session, "first@example.com").dealer_id == dealer_ids["NJ1"]


def test_repeat_signup_reroutes_only_while_unacknowledged(client, session, dealer_ids):
    client.post("/api/v1/signups", json=valid_signup(zip="10001"))
    client.post("/api/v1/signups", json=valid_signup(zip="90210"))
    assert lead_for(session).dealer_id == dealer_ids["LA1"]
    session.execute(sa.update(Lead).values(acknowledged_at=utcnow()))
    session.commit()
    client.post("/api/v1/signups", json=valid_signup(zip="10001"))
    lead = lead_for(session)
    assert (lead.zip5, lead.dealer_id, lead.signup_count) == ("10001", dealer_ids["LA1"], 3)


def test_repeat_signup_without_attribution_keeps_the_earlier_one(client, session):
    utm = {"utm_source": "newsletter", "utm_campaign": "jcw"}
    client.post(
        "/api/v1/signups",
        json=valid_signup(utm=utm, source="https://www.miniusa.com/", interests=["Countryman"]),
    )
    client.post("/api/v1/signups", json=valid_signup(last_name="Smith"))
    lead = lead_for(session)
    assert (lead.last_name, lead.utm, lead.source, lead.interests) == (
        "Smith",
        utm,
        "https://www.miniusa.com/",
        ["Countryman"],
    )


def test_a_failed_version_check_keeps_routing_with_the_table_in_memory(
    app, session, dealer_ids, monkeypatch, caplog
):
    """A restart of PostgreSQL leaves dead pooled connections; the first to be used may be the
    routing table's version check. The table in memory keeps routing; no signup is refused."""
    from leadsvc.extensions import db

    with app.app_context():
        table = routing.routing_table(app, force_check=True)

    class DeadSession:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def scalar(self, *args, **kwargs):
            raise sa.exc.OperationalError("SELECT max(version)", {}, Exception("server closed"))

    monkeypatch.setattr(db, "sessionmaker", lambda app=None: lambda: DeadSession())
    with app.app_context():
        assert routing.routing_table(app, force_check=True) is table
        assert table.route_for_zip("90210").dealer_id == dealer_ids["LA1"]
    assert "routing table not re-checked (Exception): version 1 kept" in caplog.text
    routing_cache = app.extensions["leadsvc.routing"]
    routing_cache.table = None  # nothing in memory yet: nothing to route with, so it fails
    with app.app_context(), pytest.raises(sa.exc.OperationalError):
        routing.routing_table(app, force_check=True)
