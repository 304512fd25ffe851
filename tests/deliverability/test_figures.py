"""Bounces and complaints as figures: /metrics by kind and day, the bounce rate per day (the
console's Overview chart), and one address's bounce history in the subject lookup."""

from datetime import UTC, datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families

from leadsvc.auth.audit import COMMAND_LINE
from leadsvc.auth.keys import create_key
from leadsvc.auth.users import create_user
from leadsvc.deliverability.figures import bounce_rate_per_day
from leadsvc.extensions import db
from tests.deliverability.support import bounce_app, ingest, send_welcome

PASSWORD = "correct horse battery staple"


@pytest.fixture
def bounced(make_app, smtp, session, tmp_path):
    """Two welcome emails sent today: one bounced hard, the other's person complained."""
    app = bounce_app(make_app, smtp)
    hard = send_welcome(app, smtp, session, "gone@example.com")
    complained = send_welcome(app, smtp, session, "annoyed@example.com")
    ingest(
        app,
        tmp_path,
        hard.notification("postfix_hard.eml"),
        complained.notification("arf_complaint.eml"),
    )
    return app


def _samples(app) -> dict[tuple[str, tuple], float]:
    reply = app.test_client().get("/metrics")
    assert reply.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(reply.get_data(as_text=True))
        for sample in family.samples
    }


def test_metrics_count_bounces_and_complaints_by_kind_and_day_and_the_rate(bounced):
    today = datetime.now(UTC).date().isoformat()
    samples = _samples(bounced)
    assert samples[("leadsvc_bounce_events_total", (("kind", "hard"),))] == 1
    assert samples[("leadsvc_bounce_events_total", (("kind", "complaint"),))] == 1
    assert samples[("leadsvc_bounce_events_total", (("kind", "soft"),))] == 0
    by_day = "leadsvc_bounce_events_by_day"
    assert samples[(by_day, (("day", today), ("kind", "hard")))] == 1
    assert samples[(by_day, (("day", today), ("kind", "complaint")))] == 1
    assert samples[("leadsvc_bounce_rate", (("day", today),))] == 0.5  # 1 of 2 emails bounced
    assert len([key for key in samples if key[0] == "leadsvc_bounce_rate"]) == 7


def test_the_bounce_rate_per_day_counts_the_days_emails_and_their_bounces(bounced, session):
    rows = bounce_rate_per_day(session, 30)
    assert len(rows) == 30 and rows[-1].day == datetime.now(UTC).date()
    assert (rows[-1].sent, rows[-1].bounced, rows[-1].rate) == (2, 1, 0.5)
    assert all(row.sent == 0 and row.rate == 0.0 for row in rows[:-1])


def test_the_subject_lookup_shows_the_addresses_bounce_history(bounced, session):
    with bounced.app_context(), db.sessionmaker(bounced)() as setup:
        key = create_key(setup, "compliance")[1]
    reply = bounced.test_client().get(
        "/api/v1/consent/subjects",
        query_string={"email": "gone@example.com"},
        headers={"Authorization": f"Bearer {key}"},
    )
    body = reply.get_json()
    assert reply.status_code == 200 and body["lead"]["bounced_at"] is not None
    [event] = body["bounces"]
    assert (event["kind"], event["status"], event["suppressed"]) == ("hard", "5.1.1", True)
    assert event["outbox_id"] == body["emails_sent"][0]["id"]
    other = bounced.test_client().get(
        "/api/v1/consent/subjects",
        query_string={"email": "annoyed@example.com"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert [e["kind"] for e in other.get_json()["bounces"]] == ["complaint"]


def test_the_console_shows_the_history_and_charts_the_bounce_rate(bounced):
    from tests.console.conftest import sign_in

    with bounced.app_context(), db.sessionmaker(bounced)() as setup:
        create_user(setup, COMMAND_LINE, "compliance@example.com", PASSWORD, "compliance", None)
    client = bounced.test_client()
    assert sign_in(client, "compliance@example.com", PASSWORD).status_code == 303
    page = client.get("/console/people", query_string={"email": "gone@example.com"}).text
    assert "Bounces and complaints" in page and "hard (suppressed)" in page and "5.1.1" in page
    assert "bounced" in page and "nothing is sent to this address" in page
    overview = client.get("/console/overview").text
    assert (
        "Emails sent and bounced per day" in overview and '<td class="num">50.0%</td>' in overview
    )
    chart = client.get("/console/overview/bounces.svg")
    assert chart.mimetype == "image/svg+xml" and b"Bounce rate" in chart.data
