"""The dealer's leads, compliance's people, texts, export and ledger, the overview, the audit."""

from __future__ import annotations

import json
import re

import sqlalchemy as sa

from leadsvc.auth.models import StaffAudit
from leadsvc.consent.models import ConsentText
from leadsvc.leads.models import Lead
from tests.console.conftest import (
    csrf_token,
    finished_verifications,
    post_form,
    sign_in,
    sign_up,
)


def _actions(console_db) -> list[tuple[str, str, str | None]]:
    with console_db() as session:
        rows = session.execute(
            sa.select(StaffAudit.actor, StaffAudit.action, StaffAudit.target).order_by(
                StaffAudit.id
            )
        )
        return [tuple(row) for row in rows if row.action != "user.create"]


def test_a_dealer_sees_and_acknowledges_its_own_leads_only(client, console_db, accounts):
    mine = [sign_up(client, console_db, f"p{n}@example.com") for n in range(3)]
    theirs = sign_up(client, console_db, "west@example.com", "90210")
    sign_in(client, accounts["ny"])
    page = client.get("/console/leads")
    assert page.status_code == 200
    assert page.text.index("p2@example.com") < page.text.index("p0@example.com")  # newest first
    assert "west@example.com" not in page.text
    assert client.get(f"/console/leads/{theirs}").status_code == 404
    assert "p1@example.com" in client.get(f"/console/leads/{mine[1]}").text
    token = csrf_token(page.text)
    reply = client.post(
        "/console/leads/acknowledge",
        data={"lead_id": [str(mine[0]), str(mine[1]), str(theirs)], "csrf_token": token},
    )
    assert reply.status_code == 303
    after = client.get("/console/leads")
    assert "2 leads acknowledged." in after.text
    assert "p0@example.com" not in after.text and "p2@example.com" in after.text
    assert "p0@example.com" in client.get("/console/leads?status=all").text
    with console_db() as session:
        assert session.get(Lead, theirs).acknowledged_at is None
    assert _actions(console_db) == [(accounts["ny"], "leads.acknowledge", "2 leads")]


def test_a_dealer_downloads_the_page_as_csv_and_adf(client, console_db, accounts):
    sign_up(client, console_db, "csv@example.com")
    sign_in(client, accounts["ny"])
    csv_reply = client.get("/console/leads/download.csv?status=all")
    assert csv_reply.mimetype == "text/csv" and "csv@example.com" in csv_reply.text
    assert "attachment" in csv_reply.headers["Content-Disposition"]
    adf = client.get("/console/leads/download.adf?status=all")
    assert adf.text.startswith('<?xml version="1.0"?>') and "csv@example.com" in adf.text


def test_paging_newest_first(client, console_db, accounts, monkeypatch):
    from leadsvc.console import views_leads

    monkeypatch.setattr(views_leads, "PAGE_SIZE", 2)
    for n in range(3):
        sign_up(client, console_db, f"page{n}@example.com")
    sign_in(client, accounts["ny"])
    first = client.get("/console/leads")
    assert "page2@example.com" in first.text and "page0@example.com" not in first.text
    older = first.text.split('href="/console/leads?status=new&amp;older_than=')[1].split('"')[0]
    second = client.get(f"/console/leads?status=new&older_than={older}")
    assert "page0@example.com" in second.text and "page2@example.com" not in second.text


def test_compliance_looks_up_and_erases_a_person(client, console_db, accounts):
    sign_up(client, console_db, "erase.me@example.com")
    sign_in(client, accounts["compliance"])
    found = client.get("/console/people?email=erase.me@example.com")
    assert "version 1" in found.text and "welcome email" in found.text
    token = csrf_token(found.text)
    wrong = client.post(
        "/console/people/erase",
        data={
            "email": "erase.me@example.com",
            "confirm_email": "other@example.com",
            "csrf_token": token,
        },
    )
    assert wrong.status_code == 422 and "The two addresses are not the same." in wrong.text
    with console_db() as session:
        assert session.scalar(sa.select(Lead.first_name)) == "Jane"
    done = client.post(
        "/console/people/erase",
        data={
            "email": "erase.me@example.com",
            "confirm_email": "Erase.Me@example.com",
            "csrf_token": token,
        },
    )
    assert done.status_code == 200 and "The person is erased." in done.text
    assert [a for _, a, _ in _actions(console_db)] == ["person.erase"]


def test_a_bad_lookup_gets_a_message_by_the_field(client, accounts):
    sign_in(client, accounts["compliance"])
    reply = client.get("/console/people?email=not-an-address")
    assert reply.status_code == 422 and "Please enter a valid email address." in reply.text


def test_compliance_previews_then_publishes_a_consent_text(client, console_db, accounts):
    sign_in(client, accounts["compliance"])
    preview = post_form(client, "/console/texts", {"text": "A new notice."})
    assert preview.status_code == 200 and 'id="preview">A new notice.' in preview.text
    published = client.post(
        "/console/texts",
        data={"text": "A new notice.", "publish": "y", "csrf_token": csrf_token(preview.text)},
    )
    assert published.status_code == 303
    assert "Version 2 is published and active." in client.get("/console/texts").text
    with console_db() as session:
        assert session.scalar(sa.select(ConsentText.version).where(ConsentText.active)) == 2
    assert _actions(console_db) == [(accounts["compliance"], "consent_text.publish", "version 2")]


def test_compliance_exports_a_date_range_as_json_lines(client, console_db, accounts):
    sign_up(client, console_db, "export@example.com")
    sign_in(client, accounts["compliance"])
    page = client.get("/console/export")
    start, end = re.findall(r'type="date" value="([0-9-]{10})"', page.text)
    reply = client.post(
        "/console/export",
        data={"start": start, "end": end, "format": "jsonl", "csrf_token": csrf_token(page.text)},
    )
    lines = [json.loads(line) for line in reply.get_data(as_text=True).splitlines()]
    assert [line["event_type"] for line in lines] == ["given"]
    assert "attachment" in reply.headers["Content-Disposition"]
    assert [a for _, a, _ in _actions(console_db)] == ["consent.export"]
    bad = client.post(
        "/console/export",
        data={
            "start": end,
            "end": "2000-01-01",
            "format": "csv",
            "csrf_token": csrf_token(page.text),
        },
    )
    assert bad.status_code == 422 and "The end date is before the start date." in bad.text


def test_compliance_verifies_the_ledger_as_a_job(client, console_db, accounts):
    sign_up(client, console_db, "ledger@example.com")
    sign_in(client, accounts["compliance"])
    assert "never run" in client.get("/console/ledger").text
    reply = post_form(client, "/console/ledger", {})
    assert reply.status_code == 303 and reply.headers["Location"].endswith("/console/ledger")
    assert "The verification has started." in client.get("/console/ledger").text
    assert finished_verifications(console_db) == [(f"console:{accounts['compliance']}", True)]
    page = client.get("/console/ledger").text
    assert "The ledger is intact" in page and "Verify the ledger now" in page
    assert f"UTC by console:{accounts['compliance']}: intact" in page


def test_overview_shows_figures_as_charts_and_tables(client, console_db, accounts):
    sign_up(client, console_db, "o1@example.com")
    sign_up(client, console_db, "o2@example.com", "09001")  # military: unassigned
    sign_in(client, accounts["admin"])
    page = client.get("/console/overview?days=90")
    assert page.status_code == 200
    assert (
        '<th scope="row">NY1</th>' in page.text and '<th scope="row">unassigned</th>' in page.text
    )
    for name in ("signups", "campaigns", "consent", "dealers"):
        chart = client.get(f"/console/overview/{name}.svg")
        assert chart.mimetype == "image/svg+xml" and b"<svg" in chart.data
        assert b"kozea" not in chart.data  # no script from a CDN
        assert chart.headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_audit_log_shows_who_did_what_from_where(client, console_db, accounts):
    sign_up(client, console_db, "audited@example.com")
    sign_in(client, accounts["compliance"])
    post_form(client, "/console/ledger", {})
    finished_verifications(console_db)
    page = client.get("/console/audit")
    assert "ledger.verify" in page.text and accounts["compliance"] in page.text
    assert "127.0.0.1" in page.text and "user.create" in page.text
