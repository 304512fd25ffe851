"""A link confirms only the signup it was sent for: links from older emails cannot replay a
confirmation across an unsubscribe and a new signup."""

import re

import sqlalchemy as sa

from leadsvc.consent.models import ConsentEvent
from leadsvc.leads.models import Lead
from tests.factories import valid_signup
from tests.jobs.support import FAST, drain, parts

STALE = "no longer valid"


def _link(message, path: str) -> str:
    text = parts(message)["text/plain"]
    return re.search(rf"https?://\S+?(/{path}/[A-Za-z0-9._-]+)", text)[1]


def _state(session, lead_id: int) -> tuple[str, list[str]]:
    session.rollback()
    events = session.scalars(
        sa.select(ConsentEvent.event_type)
        .where(ConsentEvent.lead_id == lead_id)
        .order_by(ConsentEvent.id)
    ).all()
    return session.get(Lead, lead_id).consent_status, list(events)


def test_a_first_signups_confirm_link_does_not_confirm_a_later_signup(make_app, smtp, session):
    app = make_app(double_opt_in=True, smtp_url=smtp.url, **FAST)
    client = app.test_client()
    assert client.post("/api/v1/signups", json=valid_signup()).status_code == 202
    drain(app)
    first = smtp.wait_for(1)[0]
    first_confirm, unsubscribe = _link(first, "confirm"), _link(first, "unsubscribe")
    lead_id = session.scalars(sa.select(Lead.id)).one()

    assert client.post(first_confirm).status_code == 200
    assert client.post(unsubscribe).status_code == 200
    assert client.post("/api/v1/signups", json=valid_signup()).status_code == 202
    assert _state(session, lead_id)[0] == "pending"

    for method in ("get", "post"):
        reply = getattr(client, method)(first_confirm)
        page = reply.get_data(as_text=True)
        assert reply.status_code == 410, page
        assert STALE in page and "newest email" in page
    assert _state(session, lead_id) == (
        "pending",
        ["given", "confirmed", "withdrawn", "given"],
    )

    drain(app)
    latest = smtp.wait_for(2)[-1]  # the welcome email was skipped by the unsubscribe
    assert "confirm" in latest["Subject"].lower()
    assert client.post(_link(latest, "confirm")).status_code == 200
    assert _state(session, lead_id)[0] == "confirmed"


def test_a_repeat_signup_makes_the_earlier_confirm_link_stale(make_app, smtp, session):
    app = make_app(double_opt_in=True, smtp_url=smtp.url, **FAST)
    client = app.test_client()
    client.post("/api/v1/signups", json=valid_signup())
    drain(app)
    first = _link(smtp.wait_for(1)[0], "confirm")
    client.post("/api/v1/signups", json=valid_signup())
    drain(app)
    second = _link(smtp.wait_for(2)[1], "confirm")
    assert client.post(first).status_code == 410
    assert client.post(second).status_code == 200
    lead_id = session.scalars(sa.select(Lead.id)).one()
    assert _state(session, lead_id)[0] == "confirmed"
