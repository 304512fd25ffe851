"""The admin's dealer pages: roles, create and edit with the import's checks, deactivation with
its preview, reactivation, CSV uploads and their report, the unassigned pool, the audit log."""

from __future__ import annotations

import io
import re

import pytest
import sqlalchemy as sa

from leadsvc.auth.models import StaffAudit
from leadsvc.dealers.dealer_rows import validate_dealer
from leadsvc.dealers.directory import import_dealers
from leadsvc.dealers.leads import acknowledge, reassign_lead
from leadsvc.dealers.models import Dealer, LeadMove, Territory
from leadsvc.followup.service import follow_up_for_app
from leadsvc.leads.email_address import EmailChecker
from leadsvc.leads.models import Lead
from tests.console.conftest import csrf_token, post_form, sign_in, sign_up
from tests.factories import DEALER_HEADER, dealer_csv, dealer_line

NEW_DEALER = {
    "code": "BK1",
    "name": "MINI of Brooklyn",
    "street": "1 Atlantic Ave",
    "city": "Brooklyn",
    "state": "NY",
    "zip": "11201",
    "phone": "(718) 555-0100",
    "lead_email": "leads@bk.example.com",
    "response_hours": "8",
    "opening_hours": "mon-fri 09:00-18:00",
    "time_zone": "America/New_York",
}
ADMIN_PAGES = (
    "/console/dealers",
    "/console/dealers/new",
    "/console/dealers/NY1/edit",
    "/console/dealers/NY1/deactivate",
    "/console/dealers/upload/dealers",
    "/console/dealers/upload/territories",
    "/console/unassigned",
    "/console/coverage",
)


def _audit(console_db) -> list[tuple[str, str, str | None, dict | None, str | None]]:
    with console_db() as session:
        columns = (StaffAudit.actor, StaffAudit.action, StaffAudit.target, StaffAudit.detail)
        rows = session.execute(
            sa.select(*columns, StaffAudit.ip)
            .where(StaffAudit.action != "user.create")
            .order_by(StaffAudit.id)
        )
        return [tuple(row) for row in rows]


def _import_words(**changes) -> str:
    """What the CSV import says of this dealer row."""
    row = {**NEW_DEALER, **changes}
    centres = {"11201": (40.69, -73.99)}
    with pytest.raises(ValueError) as refused:
        validate_dealer(row, centres, EmailChecker())
    return str(refused.value)


@pytest.mark.parametrize("who", ["compliance", "ny"])
def test_dealer_pages_refuse_other_roles(client, accounts, who):
    sign_in(client, accounts[who])
    for path in ADMIN_PAGES:
        assert client.get(path).status_code == 403, path
    token = csrf_token(client.get("/console/leads" if who == "ny" else "/console/people").text)
    for path in ("/console/dealers/NY1/deactivate", "/console/dealers/NY1/reactivate"):
        assert client.post(path, data={"csrf_token": token}).status_code == 403
    reply = client.post("/console/dealers/new", data={**NEW_DEALER, "csrf_token": token})
    assert reply.status_code == 403


def test_admin_opens_every_dealer_page(client, accounts):
    sign_in(client, accounts["admin"])
    for path in ADMIN_PAGES:
        assert client.get(path).status_code == 200, path


def test_create_refuses_with_the_import_words_then_creates(client, console_db, accounts):
    sign_in(client, accounts["admin"])
    bad_zip, bad_zone = _import_words(zip="00000"), _import_words(time_zone="Mars/Olympus")
    reply = post_form(client, "/console/dealers/new", {**NEW_DEALER, "zip": "00000"})
    assert reply.status_code == 422
    assert f'<p class="error" id="zip-error">{bad_zip.replace(chr(39), "&#39;")}</p>' in reply.text
    reply = post_form(client, "/console/dealers/new", {**NEW_DEALER, "time_zone": "Mars/Olympus"})
    assert reply.status_code == 422 and 'id="time_zone-error"' in reply.text
    assert bad_zone.replace("'", "&#39;") in reply.text
    taken = post_form(client, "/console/dealers/new", {**NEW_DEALER, "code": "ny1"})
    assert taken.status_code == 422 and "code NY1 is already taken" in taken.text
    with console_db() as session:
        assert session.scalar(sa.select(Dealer).where(Dealer.code == "BK1")) is None
        assert session.scalar(sa.select(Dealer.name).where(Dealer.code == "NY1")) == "MINI NY1"

    created = post_form(client, "/console/dealers/new", NEW_DEALER)
    assert created.status_code == 303
    listed = client.get(created.headers["Location"])
    assert "Dealer BK1 is created." in listed.text and "MINI of Brooklyn" in listed.text
    with console_db() as session:
        dealer = session.scalar(sa.select(Dealer).where(Dealer.code == "BK1"))
        assert (dealer.response_hours, dealer.opening_hours, dealer.time_zone) == (
            8.0,
            "mon-fri 09:00-18:00",
            "America/New_York",
        )
    assert _audit(console_db) == [
        (accounts["admin"], "dealer.create", "BK1", {"routing": "created"}, "127.0.0.1")
    ]


def test_edit_keeps_the_code_and_checks_as_the_import(client, console_db, accounts):
    sign_in(client, accounts["admin"])
    form = client.get("/console/dealers/NY1/edit")
    assert 'value="MINI NY1"' in form.text and 'name="code"' not in form.text
    values = dict(re.findall(r'name="(\w+)" type="text" value="([^"]*)"', form.text))
    bad = client.post(
        "/console/dealers/NY1/edit",
        data={**values, "phone": "12", "csrf_token": csrf_token(form.text)},
    )
    assert bad.status_code == 422
    assert 'id="phone-error">phone &#39;12&#39; is not a phone number</p>' in bad.text
    saved = client.post(
        "/console/dealers/NY1/edit",
        data={**values, "name": "MINI of Manhattan", "csrf_token": csrf_token(form.text)},
    )
    assert saved.status_code == 303
    assert "Dealer NY1 is updated." in client.get(saved.headers["Location"]).text
    with console_db() as session:
        assert session.scalar(sa.select(Dealer.name).where(Dealer.code == "NY1")) == (
            "MINI of Manhattan"
        )
    assert [(a, t) for _, a, t, _, _ in _audit(console_db)] == [("dealer.update", "NY1")]


def _cell(row: str, label: str) -> str:
    return row.split(f'data-label="{label}" class="num">')[1].split("</td>")[0]


def test_list_searches_and_shows_status_leads_and_figures(app, client, console_db, accounts):
    first = sign_up(client, console_db, "one@example.com")
    sign_up(client, console_db, "two@example.com")
    follow_up_for_app(app)  # the relay's pass: each lead's turn with NY1 starts
    with console_db() as session:
        acknowledge(session, session.get(Lead, first).dealer_id, [first])
    follow_up_for_app(app)  # ... and the acknowledged one counts as answered
    sign_in(client, accounts["admin"])
    page = client.get("/console/dealers")
    assert "2 dealers" in page.text
    ny = page.text.split('id="dealer-NY1"')[1].split("</tr>")[0]
    assert '<span class="badge new">active</span>' in ny
    assert (_cell(ny, "Leads now"), _cell(ny, "Received")) == ("2", "2")
    assert _cell(ny, "Answered in target").startswith("1 ")
    assert _cell(ny, "Median to answer").endswith(" h")
    assert _cell(ny, "90th pct. to answer").endswith(" h")
    assert (_cell(ny, "Reminded"), _cell(ny, "Moved away"), _cell(ny, "By reassignment")) == (
        "0",
        "0",
        "0",
    )
    la = page.text.split('id="dealer-LA1"')[1].split("</tr>")[0]
    assert (_cell(la, "Received"), _cell(la, "Median to answer")) == ("0", "–")
    found = client.get("/console/dealers?q=90036")
    assert "1 dealer matching" in found.text and "LA1" in found.text and "NY1" not in found.text
    assert "No dealer matches" in client.get("/console/dealers?q=nowhere").text


def test_deactivate_previews_the_move_then_moves(client, console_db, accounts):
    with console_db() as session:
        import_dealers(session, dealer_csv(dealer_line("NJ1", "07030", state="NJ")))
    ids = [sign_up(client, console_db, f"n{n}@example.com") for n in range(3)]
    sign_up(client, console_db, "far@example.com", "90210")  # LA1's: stays
    with console_db() as session:
        ny = session.scalar(sa.select(Dealer.id).where(Dealer.code == "NY1"))
        acknowledge(session, ny, [ids[0]])
    sign_in(client, accounts["admin"])
    preview = client.get("/console/dealers/NY1/deactivate")
    assert "<strong>2 leads</strong> not yet acknowledged will move" in preview.text
    assert re.search(
        r"NJ1 <span class=\"muted\">MINI NJ1</span></td><td class=\"num\">2<", preview.text
    )
    with console_db() as session:
        assert session.scalar(sa.select(Dealer.active).where(Dealer.code == "NY1"))  # unchanged

    done = client.post(
        "/console/dealers/NY1/deactivate", data={"csrf_token": csrf_token(preview.text)}
    )
    assert done.status_code == 303
    assert "Dealer NY1 is deactivated; 2 leads moved." in client.get(done.headers["Location"]).text
    with console_db() as session:
        nj = session.scalar(sa.select(Dealer.id).where(Dealer.code == "NJ1"))
        assert [session.get(Lead, i).dealer_id for i in ids] == [ny, nj, nj]
        moves = session.scalars(sa.select(LeadMove.to_dealer_id)).all()
        assert moves == [nj, nj]

    again = post_form(client, "/console/dealers/NY1/reactivate", {}, page="/console/dealers")
    assert again.status_code == 303
    assert "Dealer NY1 is active again." in client.get(again.headers["Location"]).text
    with console_db() as session:
        assert session.scalar(sa.select(Dealer.active).where(Dealer.code == "NY1"))
    entries = [(a, t, d.get("moved_leads")) for _, a, t, d, _ in _audit(console_db)]
    assert entries == [("dealer.deactivate", "NY1", 2), ("dealer.reactivate", "NY1", None)]


def _upload(client, kind: str, body: bytes, name: str = "dealers.csv", partial: bool = False):
    page = client.get(f"/console/dealers/upload/{kind}")
    data = {"csrf_token": csrf_token(page.text), "file": (io.BytesIO(body), name)}
    if partial:
        data["partial"] = "y"
    return client.post(
        f"/console/dealers/upload/{kind}", data=data, content_type="multipart/form-data"
    )


def test_dealer_upload_reports_each_row(client, console_db, accounts):
    sign_in(client, accounts["admin"])
    text = dealer_csv(dealer_line("SF1", "94103", state="CA"), dealer_line("XX", "00000"))
    refused = _upload(client, "dealers", text.encode())
    assert refused.status_code == 422
    assert "Nothing was changed: 1 row refused." in refused.text
    assert "ZIP &#39;00000&#39; is not a US ZIP code" in refused.text
    assert "not applied" in refused.text
    with console_db() as session:
        assert session.scalar(sa.select(Dealer).where(Dealer.code == "SF1")) is None
    applied = _upload(client, "dealers", text.encode(), partial=True)
    assert applied.status_code == 200 and "Applied: 1 created, 1 rejected." in applied.text
    not_csv = _upload(client, "dealers", b"\xff\xfe not text")
    assert not_csv.status_code == 422 and "the file is not UTF-8" in not_csv.text
    actions = [(a, t, d["applied"]) for _, a, t, d, _ in _audit(console_db)]
    assert actions == [
        ("dealers.import", "dealers.csv", False),
        ("dealers.import", "dealers.csv", True),
    ]


def test_uploads_of_megabytes_pass_while_the_form_keeps_its_limit(client, console_db, accounts):
    sign_in(client, accounts["admin"])
    padding = "".join(f"# {n:07d} {'x' * 90}\n" for n in range(20_000))  # about 2 MB
    body = (DEALER_HEADER + "\n" + padding + dealer_line("BIG", "60601", state="IL")).encode()
    assert len(body) > 2_000_000
    reply = _upload(client, "dealers", body, name="big.csv")
    assert reply.status_code == 200 and "Applied: 1 created." in reply.text
    too_big = _upload(client, "dealers", b"#" * (6 * 1024 * 1024))
    assert too_big.status_code == 413 and "That file is too large" in too_big.text
    # The public form and the API keep MAX_CONTENT_LENGTH (16 KB), console pages too.
    signup = client.post(
        "/api/v1/signups", data=b"{" + b" " * 20_000 + b"}", content_type="application/json"
    )
    assert signup.status_code == 413
    big_form = post_form(client, "/console/dealers/new", {**NEW_DEALER, "name": "x" * 20_000})
    assert big_form.status_code == 413


def test_territory_upload_assigns_zips(client, console_db, accounts):
    sign_in(client, accounts["admin"])
    reply = _upload(client, "territories", b"zip,dealer_code\n10001,LA1\n10002,NOPE\n", "t.csv")
    assert reply.status_code == 422 and "no dealer with code NOPE" in reply.text
    reply = _upload(client, "territories", b"zip,dealer_code\n10001,LA1\n", "t.csv")
    assert reply.status_code == 200 and "1 assigned" in reply.text
    with console_db() as session:
        assert session.get(Territory, "10001").dealer_id == session.scalar(
            sa.select(Dealer.id).where(Dealer.code == "LA1")
        )
    assert [(a, d["applied"]) for _, a, _, d, _ in _audit(console_db)] == [
        ("territories.import", False),
        ("territories.import", True),
    ]


def test_unassigned_pool_reassigns_as_the_api_does(client, console_db, accounts):
    military = sign_up(client, console_db, "army@example.com", "09001")
    local = sign_up(client, console_db, "local@example.com", "10001")
    with console_db() as session:
        reassign_lead(session, local, None)  # back to the pool by hand
    sign_in(client, accounts["admin"])
    pool = client.get("/console/unassigned")
    assert f'aria-label="Select lead {military}"' in pool.text
    assert f'aria-label="Select lead {local}"' in pool.text
    token = csrf_token(pool.text)
    chosen = client.post(
        "/console/unassigned/reassign",
        data={
            "lead_id": [str(military)],
            "dealer_code": "LA1",
            "how": "chosen",
            "csrf_token": token,
        },
    )
    assert chosen.status_code == 303
    routed = client.post(
        "/console/unassigned/reassign",
        data={"lead_id": [str(local)], "dealer_code": "LA1", "how": "route", "csrf_token": token},
    )
    assert "1 lead reassigned." in client.get(routed.headers["Location"]).text
    with console_db() as session:
        codes = dict(session.execute(sa.select(Dealer.id, Dealer.code)).all())
        army, here = session.get(Lead, military), session.get(Lead, local)
        assert (codes[army.dealer_id], army.routing_reason) == ("LA1", "manual")
        assert (codes[here.dealer_id], here.routing_reason) == ("NY1", "nearest")
        reasons = session.scalars(sa.select(LeadMove.reason).order_by(LeadMove.id)).all()
        assert reasons == ["admin_reassigned"] * 3
    assert "The unassigned pool is empty" in client.get("/console/unassigned").text
    assert [(a, d["lead_ids"], d["how"]) for _, a, _, d, _ in _audit(console_db)] == [
        ("lead.reassign", [military], "chosen"),
        ("lead.reassign", [local], "routing"),
    ]
