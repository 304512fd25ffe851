"""The CRM's answer call, and the figures in the feed, the admin API and /metrics."""

from __future__ import annotations

from datetime import timedelta

from tests.followup.conftest import DUE, REMIND, START, notices, run_at, sign_up

ANSWER = "/api/v1/dealer/leads/{}/answer"


def test_an_answered_lead_is_neither_reminded_nor_moved_and_counts_in_the_figures(
    app, client, session, dealers, keys, clock
):
    answered = sign_up(client, session, "ann@example.com")
    late = sign_up(client, session, "ben@example.com")
    run_at(app, clock, START)
    clock.set(START + timedelta(hours=2))  # Monday 11:00 in New York: 2 business hours
    reply = client.post(ANSWER.format(answered), headers=keys["NYA"])
    assert reply.status_code == 200
    assert reply.get_json() | {"answered_at": None} == {
        "id": answered,
        "answered_at": None,
        "answered_by": "crm",
        "within_target": True,
    }
    again = client.post(ANSWER.format(answered), headers=keys["NYA"]).get_json()
    assert again["answered_at"] == reply.get_json()["answered_at"]  # idempotent
    for moment in (REMIND, DUE):
        run_at(app, clock, moment)
    assert [kind for kind, _ in notices(session, answered)] == ["welcome_email", "dealer_email"]
    assert ("dealer_reminder_email", "NYA") in notices(session, late)

    figures = client.get("/api/v1/dealer/leads", headers=keys["NYA"]).get_json()["follow_up"]
    assert figures == {
        "received": 2,
        "answered": 1,
        "answered_within_target": 1,
        "median_answer_hours": 2.0,
        "p90_answer_hours": 2.0,
        "reminded": 1,
        "moved_away": 1,
        "received_by_reassignment": 0,
    }
    run_at(app, clock, DUE + timedelta(seconds=1))
    rows = client.get("/api/v1/admin/follow-up", headers=keys["admin"]).get_json()["dealers"]
    by_code = {row["code"]: row for row in rows}
    assert by_code["NYB"]["received_by_reassignment"] == 1
    assert by_code["NYA"]["response_hours"] == 24.0
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'leadsvc_follow_up_moved_away{dealer="NYA"} 1.0' in metrics
    assert 'leadsvc_follow_up_median_answer_hours{dealer="NYA"} 2.0' in metrics


def test_another_dealers_lead_cannot_be_answered(app, client, session, dealers, keys, clock):
    lead_id = sign_up(client, session, "cat@example.com")
    reply = client.post(ANSWER.format(lead_id), headers=keys["NYB"])
    assert reply.status_code == 404
    assert reply.get_json()["message"] == "No such lead."
    assert client.post(ANSWER.format(lead_id), headers=keys["admin"]).status_code == 403


def test_holidays_an_admin_adds_stop_the_clock(app, client, session, dealers, keys, clock):
    # Tuesday 2026-03-03 closed for every dealer: the reminder moves from Tuesday to Wednesday.
    body = {"day": "2026-03-03", "name": "Inventory day", "dealer_code": None}
    reply = client.post("/api/v1/admin/holidays", headers=keys["admin"], json=body)
    assert reply.status_code == 200
    listed = client.get("/api/v1/admin/holidays", headers=keys["admin"]).get_json()
    assert listed == {"holidays": [body]}
    lead_id = sign_up(client, session, "dan@example.com")
    run_at(app, clock, START)
    run_at(app, clock, REMIND)
    assert ("dealer_reminder_email", "NYA") not in notices(session, lead_id)
    run_at(app, clock, REMIND + timedelta(days=1))
    assert ("dealer_reminder_email", "NYA") in notices(session, lead_id)


def test_a_dealers_own_target_hours_and_zone_come_from_the_admin_api(
    app, client, session, dealers, keys, clock
):
    dealer = {
        "name": "MINI of Chicago",
        "street": "1 Main Street",
        "city": "Chicago",
        "state": "IL",
        "zip": "60601",
        "phone": "(800) 555-0100",
        "lead_email": "leads-chi@example.com",
        "response_hours": 4.5,
        "opening_hours": "mon-sun 08:00-20:00",
    }
    reply = client.put("/api/v1/admin/dealers/CHI", headers=keys["admin"], json=dealer)
    assert reply.status_code == 200, reply.get_json()
    shown = {
        d["code"]: d
        for d in client.get("/api/v1/admin/dealers", headers=keys["admin"]).get_json()["dealers"]
    }["CHI"]
    assert (shown["response_hours"], shown["opening_hours"], shown["time_zone"]) == (
        4.5,
        "mon-sun 08:00-20:00",
        None,
    )
    bad = client.put(
        "/api/v1/admin/dealers/CHI",
        headers=keys["admin"],
        json=dealer | {"opening_hours": "weekdays 9-5", "time_zone": "Mars/Base"},
    )
    assert bad.status_code == 422
    assert "should look like 'mon-fri 09:00-18:00'" in bad.get_json()["errors"]["1"]
