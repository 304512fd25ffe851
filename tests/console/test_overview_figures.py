"""The overview's figures against known data: signups by outcome (refused included), people per
day by campaign, jobs per hour, the ledger's last verification; and the console's 404 and 405."""

from __future__ import annotations

import re
from datetime import timedelta

import sqlalchemy as sa

from leadsvc.db import utcnow
from leadsvc.outbox.models import OutboxAttempt, OutboxMessage
from tests.console.conftest import finished_verifications, post_form, sign_in, sign_up
from tests.factories import valid_signup


def row(html: str, caption: str, label: str) -> list[str]:
    """The cells of the row `label` in the table captioned `caption`."""
    table = html[html.index(f"<caption>{caption}") :]
    table = table[: table.index("</table>")]
    found = re.search(rf'<th scope="row">{re.escape(label)}</th>(.*?)</tr>', table)
    assert found, f"no row {label} in {caption}"
    return re.findall(r'<td class="num">([^<]*)</td>', found.group(1))


def header(html: str, caption: str) -> list[str]:
    table = html[html.index(f"<caption>{caption}") :]
    return re.findall(r'<th scope="col"[^>]*>([^<]*)</th>', table[: table.index("</thead>")])


def test_signups_by_outcome_count_new_repeat_and_refused(client, console_db, accounts):
    for email in ("a@example.com", "b@example.com", "c@example.com"):
        sign_up(client, console_db, email)
    sign_up(client, console_db, "a@example.com")  # a repeat
    for _ in range(2):
        bad = client.post("/api/v1/signups", json=valid_signup(email="not an address"))
        assert bad.status_code == 422
    sign_in(client, accounts["admin"])
    page = client.get("/console/overview").text
    today = utcnow().date().isoformat()
    assert row(page, "Signups per day by outcome, last 30 days", today) == ["3", "1", "2"]
    yesterday = (utcnow().date() - timedelta(days=1)).isoformat()
    assert row(page, "Signups per day by outcome, last 30 days", yesterday) == ["0", "0", "0"]


def test_new_people_per_day_by_campaign(client, console_db, accounts):
    signups = [
        ("s1@example.com", {"utm_campaign": "spring"}),
        ("s2@example.com", {"utm_campaign": "spring", "utm_source": "mail"}),
        ("f1@example.com", {"utm_source": "facebook"}),
        ("n1@example.com", None),
    ]
    for email, utm in signups:
        body = valid_signup(email=email, **({"utm": utm} if utm else {}))
        assert client.post("/api/v1/signups", json=body).status_code == 202
    sign_in(client, accounts["compliance"])
    page = client.get("/console/overview?days=90").text
    caption = "New people per day by campaign, last 90 days"
    assert header(page, caption) == ["Day", "spring", "(no campaign)", "source: facebook"]
    assert row(page, caption, utcnow().date().isoformat()) == ["2", "1", "1"]
    chart = client.get("/console/overview/campaign_days.svg?days=90")
    assert chart.status_code == 200 and b"spring" in chart.data


def test_jobs_per_hour_count_finished_tries_by_outcome(client, console_db, accounts):
    sign_up(client, console_db, "jobs@example.com")
    now = utcnow()
    with console_db() as session:
        outbox_id = session.scalar(sa.select(OutboxMessage.id).limit(1))
        session.execute(sa.delete(OutboxAttempt))
        for outcome, finished in [
            ("sent", now - timedelta(hours=2)),
            ("sent", now - timedelta(hours=2)),
            ("failed", now - timedelta(hours=2)),
            ("unknown", now),
            ("running", now),  # not finished: not counted
            ("sent", now - timedelta(days=3)),  # outside the 48 hours
        ]:
            session.add(
                OutboxAttempt(
                    outbox_id=outbox_id,
                    runner="test",
                    outcome=outcome,
                    started_at=finished,
                    finished_at=None if outcome == "running" else finished,
                )
            )
        session.commit()
    sign_in(client, accounts["admin"])
    page = client.get("/console/overview").text
    caption = "Outbound jobs per hour (UTC), last 48 hours"
    earlier = f"{now - timedelta(hours=2):%Y-%m-%d %H}:00"
    assert row(page, caption, earlier) == ["2", "1", "0"]
    assert row(page, caption, f"{now:%Y-%m-%d %H}:00") == ["0", "0", "1"]
    assert page.count(f"<caption>{caption}") == 1
    assert len(re.findall(r"<th scope=\"row\">\d{4}-\d\d-\d\d \d\d:00</th>", page)) == 48


def test_the_last_verification_is_recorded_and_shown(app, client, console_db, accounts):
    sign_up(client, console_db, "ledger@example.com")
    sign_in(client, accounts["compliance"])
    assert "never run" in client.get("/console/overview").text
    runner = app.test_cli_runner()
    assert runner.invoke(args=["consent", "seal"]).exit_code == 0
    verified = runner.invoke(args=["consent", "verify"])
    assert verified.exit_code == 0, verified.output
    post_form(client, "/console/ledger", {})
    # (How many events each run covered depends on what was sealed: PostgreSQL seals only
    # events below the oldest open transaction.)
    runs = finished_verifications(console_db)
    assert runs == [("cli", True), (f"console:{accounts['compliance']}", True)]
    page = client.get("/console/overview").text
    assert re.search(r"Ledger's last verification</dt><dd>[^<]+UTC: intact", page)


def test_unknown_console_urls_get_the_consoles_404_page(client, accounts):
    anonymous = client.get("/console/no/such/page")
    assert anonymous.status_code == 404
    assert "Staff console" in anonymous.text and "Sign in to the staff console" in anonymous.text
    assert "Stay In the Loop" not in anonymous.text
    sign_in(client, accounts["ny"])
    signed_in = client.get("/console/nothing-here")
    assert signed_in.status_code == 404
    assert "Back to your start page" in signed_in.text and "ny@example.com" in signed_in.text
    assert client.get("/console/overview/nothing.svg").status_code == 403  # a dealer: walled
    public = client.get("/no-such-page")
    assert public.status_code == 404 and "Staff console" not in public.text


def test_a_wrong_method_under_console_gets_the_consoles_405_page(client, accounts):
    reply = client.delete("/console/login")
    assert reply.status_code == 405
    assert "Not allowed here" in reply.text and "Staff console" in reply.text
    assert set(reply.headers["Allow"].split(", ")) >= {"GET", "POST"}
    sign_in(client, accounts["admin"])
    signed_in = client.put("/console/overview")
    assert signed_in.status_code == 405 and "Back to your start page" in signed_in.text
    api = client.put("/api/v1/signups")
    assert api.status_code == 405 and api.is_json
