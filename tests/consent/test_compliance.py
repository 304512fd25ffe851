"""Compliance: consent texts, export, subject lookup, erasure, the hash chain and retention."""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from lxml import etree  # noqa: F401  (dev extra present: same environment as the other tests)

from leadsvc.auth.keys import create_key
from leadsvc.consent import chain
from leadsvc.consent.models import ConsentEvent, ConsentSeal, ErasedSubject, ExportAudit
from leadsvc.consent.retention import purge
from leadsvc.dealers.directory import import_dealers
from leadsvc.leads.models import Lead
from leadsvc.outbox.models import OutboxMessage
from tests.factories import dealer_csv, dealer_line, valid_signup

EMAIL = "jane.doe@example.com"


@pytest.fixture
def keys(session):
    import_dealers(
        session,
        dealer_csv(
            dealer_line(
                "NY1", "10019", webhook_url="https://crm.example.com/hook", webhook_secret="s" * 24
            ),
        ),
    )
    return {
        role: create_key(session, role, "NY1" if role == "dealer" else None)[1]
        for role in ("compliance", "dealer", "admin")
    }


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def sign_up(client, **overrides):
    reply = client.post("/api/v1/signups", json=valid_signup(**overrides))
    assert reply.status_code == 202, reply.get_json()


def wait_settled(session) -> None:
    """On PostgreSQL sealing waits, by design, for every older running transaction of the whole
    server (another test session's, say) to end; wait for that before sealing."""
    from leadsvc.commit_order import settled_below

    newest = session.scalar(sa.select(sa.func.max(ConsentEvent.txid)))
    deadline = time.monotonic() + 20
    while newest is not None and time.monotonic() < deadline:
        session.rollback()
        horizon = settled_below(session)
        if horizon is None or horizon > newest:
            break
        time.sleep(0.05)


def seal(session) -> chain.SealReport:
    wait_settled(session)
    return chain.seal_pending(session)


def all_text_values(session) -> list[str]:
    """Every text value in every table (to prove an address is gone everywhere)."""
    values = []
    inspector = sa.inspect(session.get_bind())
    for table in inspector.get_table_names():
        columns = [c["name"] for c in inspector.get_columns(table)]
        for row in session.execute(sa.text(f'SELECT * FROM "{table}"')):
            values += [str(v) for v, name in zip(row, columns, strict=True) if v is not None]
    return values


def test_compliance_endpoints_are_for_compliance_keys_only(client, keys):
    for path in ("/api/v1/consent/events", f"/api/v1/consent/subjects?email={EMAIL}"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers=auth(keys["dealer"])).status_code == 403
        assert client.get(path, headers=auth(keys["admin"])).status_code == 403
    reply = client.post(
        "/api/v1/consent/erasures", json={"email": EMAIL}, headers=auth(keys["dealer"])
    )
    assert reply.status_code == 403


def test_export_covers_exactly_the_range_once_each(client, session, keys):
    for n in range(5):
        sign_up(client, email=f"p{n}@example.com")
    events = session.scalars(sa.select(ConsentEvent).order_by(ConsentEvent.id)).all()
    start, end = events[1].occurred_at, events[4].occurred_at  # [start, end): events 1, 2, 3
    query = {"from": start.isoformat(), "to": end.isoformat()}
    reply = client.get(
        "/api/v1/consent/events",
        query_string={**query, "format": "csv"},
        headers=auth(keys["compliance"]),
    )
    assert reply.status_code == 200 and reply.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(reply.get_data(as_text=True))))
    assert [int(r["event_id"]) for r in rows] == [e.id for e in events[1:4]]
    assert rows[0]["subject"] == "p1@example.com" and rows[0]["event_type"] == "given"
    assert rows[0]["text_version"] == "1" and len(rows[0]["text_sha256"]) == 64
    assert rows[0]["dealer_code"] == "NY1" and rows[0]["current_status"] == "given"
    jsonl = client.get(
        "/api/v1/consent/events",
        query_string={**query, "format": "jsonl"},
        headers=auth(keys["compliance"]),
    ).get_data(as_text=True)
    records = [json.loads(line) for line in jsonl.splitlines()]
    assert [r["event_id"] for r in records] == [e.id for e in events[1:4]]
    audits = session.scalars(sa.select(ExportAudit).order_by(ExportAudit.id)).all()
    assert [(a.format, a.rows, a.actor.startswith("api:lsk_")) for a in audits] == [
        ("csv", 3, True),
        ("jsonl", 3, True),
    ]


def test_export_neutralises_spreadsheet_formulas(client, session, keys):
    sign_up(client, source="https://www.miniusa.com/?q=1")
    session.execute(
        sa.text(
            "INSERT INTO consent_events (lead_id, subject, event_type, text_version, occurred_at, "
            "user_agent, source_url) VALUES (NULL, '=HYPERLINK(1)', 'given', 1, :t, '+cmd', '@x')"
        ),
        {"t": datetime.now(UTC)},
    )
    session.commit()
    reply = client.get("/api/v1/consent/events", headers=auth(keys["compliance"]))
    rows = list(csv.DictReader(io.StringIO(reply.get_data(as_text=True))))
    last = rows[-1]
    assert (last["subject"], last["user_agent"], last["source_url"]) == (
        "'=HYPERLINK(1)",
        "'+cmd",
        "'@x",
    )


def test_cli_export_writes_the_file_and_audits_it(app, client, session, tmp_path, keys):
    for n in range(3):
        sign_up(client, email=f"c{n}@example.com")
    output = tmp_path / "consent.csv"
    result = app.test_cli_runner().invoke(
        args=["export", "consent", "--format", "csv", "--output", str(output)]
    )
    assert result.exit_code == 0, result.output
    assert "3 consent events exported" in result.output
    assert len(list(csv.DictReader(output.open()))) == 3
    assert session.scalar(sa.select(ExportAudit.actor)).startswith("cli:")


def test_subject_lookup_returns_everything_held(client, keys, session):
    sign_up(client, interests=["Countryman"])
    reply = client.get(
        "/api/v1/consent/subjects",
        query_string={"email": "Jane.Doe@Example.com"},
        headers=auth(keys["compliance"]),
    )
    body = reply.get_json()
    assert reply.status_code == 200 and body["found"] is True
    assert body["lead"]["first_name"] == "Jane" and body["lead"]["interests"] == ["Countryman"]
    assert [e["type"] for e in body["consent_events"]] == ["given"]
    assert {m["kind"] for m in body["emails_sent"]} == {"welcome_email"}
    assert {m["dealer_code"] for m in body["dealer_notifications"]} == {"NY1"}


def test_erasure_leaves_no_copy_and_the_chain_still_verifies(client, session, keys):
    sign_up(client, first_name="Qwyzzle", last_name="Fronbagh", interests=["JCW"])
    sign_up(client, email="other@example.com")
    # The dealer was told (mark its notification sent, as the worker would have).
    session.execute(sa.update(OutboxMessage).values(status="sent"))
    session.commit()
    assert seal(session).events == 2
    reply = client.post(
        "/api/v1/consent/erasures",
        json={"email": "JANE.DOE@example.com"},
        headers=auth(keys["compliance"]),
    )
    assert reply.status_code == 200, reply.get_json()
    report = reply.get_json()
    assert report["dealers_notified"] == ["NY1"] and report["events_rewritten"] == 1
    session.expire_all()
    text = "\n".join(all_text_values(session)).lower()
    for secret in ("jane.doe@example.com", "qwyzzle", "fronbagh"):
        assert secret not in text
    assert "other@example.com" in text  # nobody else was touched
    kinds = session.scalars(sa.select(OutboxMessage.kind).where(OutboxMessage.status == "pending"))
    assert sorted(kinds) == ["dealer_erasure_email", "dealer_erasure_webhook"]
    types = session.scalars(sa.select(ConsentEvent.event_type).order_by(ConsentEvent.id)).all()
    assert types == ["given", "given", "erased"]
    seal(session)
    verified = chain.verify_chain(session)
    assert verified.ok and verified.events == 3, verified.problem
    # Idempotent: a second request changes nothing and queues nothing.
    again = client.post(
        "/api/v1/consent/erasures", json={"email": EMAIL}, headers=auth(keys["compliance"])
    ).get_json()
    assert again["already_erased"] is True and again["dealers_notified"] == []
    assert session.scalar(sa.select(sa.func.count()).select_from(ConsentEvent)) == 3
    # A later signup from the address is a new person with new consent.
    sign_up(client)
    lead = session.scalar(sa.select(Lead).where(Lead.email_key == EMAIL))
    assert lead is not None and lead.signup_count == 1
    assert session.scalar(sa.select(sa.func.count()).select_from(ErasedSubject)) == 1


def _sealed(client, session, count=4):
    for n in range(count):
        sign_up(client, email=f"s{n}@example.com")
    assert seal(session).events == count
    assert chain.verify_chain(session).ok


def _bypass_triggers(session, statement: str, **params):
    """What an attacker with database access could do (triggers off for the tampering)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("SET LOCAL session_replication_role = replica"))
        session.execute(sa.text(statement), params)
    else:
        session.execute(sa.text("PRAGMA recursive_triggers = off"))
        for name in ("consent_events_no_update", "consent_events_no_delete"):
            session.execute(sa.text(f"DROP TRIGGER IF EXISTS {name}"))
        session.execute(sa.text(statement), params)
    session.commit()


def test_verify_catches_a_changed_event(client, session):
    _sealed(client, session)
    target = session.scalars(sa.select(ConsentEvent.id).order_by(ConsentEvent.id)).all()[2]
    _bypass_triggers(session, "UPDATE consent_events SET ip = '6.6.6.6' WHERE id = :i", i=target)
    report = chain.verify_chain(session)
    assert not report.ok and f"consent event {target} was changed" in report.problem


def test_verify_catches_a_deleted_event(client, session):
    _sealed(client, session)
    target = session.scalars(sa.select(ConsentEvent.id).order_by(ConsentEvent.id)).all()[1]
    _bypass_triggers(session, "DELETE FROM consent_events WHERE id = :i", i=target)
    report = chain.verify_chain(session)
    assert not report.ok and "seal 1 covers 4 events but 3 are there" in report.problem


def test_verify_catches_reordered_seals(client, session):
    _sealed(client, session, count=2)
    _sealed_more = [sign_up(client, email=f"t{n}@example.com") for n in range(2)]
    assert seal(session).seals == 1 and len(_sealed_more) == 2
    session.execute(sa.text("UPDATE consent_seals SET seq = seq + 10"))
    session.execute(sa.text("UPDATE consent_seals SET seq = 1 WHERE seq = 12"))
    session.execute(sa.text("UPDATE consent_seals SET seq = 2 WHERE seq = 11"))
    session.commit()
    report = chain.verify_chain(session)
    assert not report.ok and "seal 1 does not follow seal 0" in report.problem


def test_verify_and_seal_from_the_command_line(app, client, session):
    sign_up(client)
    wait_settled(session)
    runner = app.test_cli_runner()
    assert "1 events sealed in 1 seals" in runner.invoke(args=["consent", "seal"]).output
    result = runner.invoke(args=["consent", "verify"])
    assert result.exit_code == 0 and "OK: 1 seals, 1 events verified" in result.output
    _bypass_triggers(session, "UPDATE consent_events SET user_agent = 'forged'")
    result = runner.invoke(args=["consent", "verify"])
    assert result.exit_code == 1 and "FAILED: consent event" in result.output


def test_publish_a_new_consent_text_and_the_form_shows_it(app, client, session, tmp_path):
    notice = tmp_path / "v2.txt"
    notice.write_text("MINI USA and your MINI Dealer may contact you by email.\n")
    runner = app.test_cli_runner()
    assert "published v2" in runner.invoke(args=["consent", "publish", str(notice)]).output
    listing = runner.invoke(args=["consent", "texts"]).output
    assert "  v1" in listing and "* v2" in listing
    page = client.get("/").get_data(as_text=True)
    assert "may contact you by email" in page and 'value="2"' in page
    sign_up(client)
    event = session.scalar(sa.select(ConsentEvent))
    assert event.text_version == 2
    again = runner.invoke(args=["consent", "publish", str(notice)])
    assert again.exit_code != 0 and "already the active version 2" in again.output


def test_purge_is_a_dry_run_unless_applied_and_keeps_consent(app, client, session):
    sign_up(client)
    sign_up(client, email="fresh@example.com")
    old = datetime.now(UTC) - timedelta(days=800)
    session.execute(sa.update(Lead).where(Lead.email_key == EMAIL).values(updated_at=old))
    session.commit()
    dry = purge(session, 730)
    assert (dry.leads, dry.applied) == (1, False)
    assert session.scalar(sa.select(sa.func.count()).select_from(Lead)) == 2
    result = app.test_cli_runner().invoke(args=["purge", "--older-than", "730", "--apply"])
    assert result.exit_code == 0 and "removed: 1 leads" in result.output
    session.expire_all()
    assert session.scalar(sa.select(sa.func.count()).select_from(Lead)) == 1
    assert session.scalar(sa.select(sa.func.count()).select_from(ConsentEvent)) == 2
    assert session.scalar(sa.select(sa.func.count()).select_from(ConsentSeal)) == 0


def test_subject_hashes_are_hmac_sha256_of_the_address_in_lower_case():
    """The keyed hash every event's digest and every erasure rests on: HMAC-SHA256 under a key
    derived from SECRET_KEY, of the address trimmed and lower-cased."""
    import hashlib
    import hmac

    key = chain.subject_key("s" * 40)
    assert key == hashlib.sha256(b"leadsvc.consent.subject:" + b"s" * 40).digest()
    assert chain.subject_key("t" * 40) != key
    expected = hmac.new(key, "zoë.o'brien@example.com".encode(), hashlib.sha256).hexdigest()
    assert chain.subject_hash("  Zoë.O'Brien@Example.COM ", key) == expected


def test_export_takes_plain_dates_as_the_command_does(client, session, keys):
    """`from`/`to` as plain dates (their midnight, UTC) or dates and times, as the CLI takes
    them; anything else is a 422 naming the field."""
    sign_up(client, email="dated@example.com")
    today = datetime.now(UTC).date()
    query = {"from": today.isoformat(), "to": (today + timedelta(days=1)).isoformat()}
    reply = client.get(
        "/api/v1/consent/events", query_string=query, headers=auth(keys["compliance"])
    )
    assert reply.status_code == 200
    assert "dated@example.com" in reply.get_data(as_text=True)
    before = {"to": today.isoformat()}
    reply = client.get(
        "/api/v1/consent/events", query_string=before, headers=auth(keys["compliance"])
    )
    assert reply.status_code == 200 and "dated@example.com" not in reply.get_data(as_text=True)
    bad = client.get(
        "/api/v1/consent/events",
        query_string={"from": "yesterday"},
        headers=auth(keys["compliance"]),
    )
    assert bad.status_code == 422 and "from" in bad.get_json()["errors"]


def test_export_bounds_any_offset_equal_or_inverted(client, session, keys):
    """Any RFC 3339 offset is taken (PostgreSQL itself stops at 15:59); equal bounds are an empty
    range, not an error; `from` after `to` is a 422 naming `from`."""
    sign_up(client, email="offset@example.com")
    events = "/api/v1/consent/events"
    headers = auth(keys["compliance"])
    far_east = {"from": "2000-01-01T00:00:00+16:00", "to": "9999-12-31T23:59:59-23:59"}
    reply = client.get(events, query_string=far_east, headers=headers)
    assert reply.status_code == 200 and "offset@example.com" in reply.get_data(as_text=True)
    instant = datetime.now(UTC).isoformat()
    empty = client.get(events, query_string={"from": instant, "to": instant}, headers=headers)
    assert empty.status_code == 200
    assert len(empty.get_data(as_text=True).strip().splitlines()) == 1  # the header row only
    inverted = {"from": "2026-02-01", "to": "2026-01-01"}
    bad = client.get(events, query_string=inverted, headers=headers)
    assert bad.status_code == 422
    assert bad.get_json()["errors"] == {"from": "from must not be after to"}


def test_a_blank_address_is_neither_looked_up_nor_erased(client, session, keys):
    headers = auth(keys["compliance"])
    for blank in ("", "   "):
        erased = client.post("/api/v1/consent/erasures", json={"email": blank}, headers=headers)
        looked_up = client.get(
            "/api/v1/consent/subjects", query_string={"email": blank}, headers=headers
        )
        for reply in (erased, looked_up):
            assert reply.status_code == 422
            assert reply.get_json()["errors"] == {"email": "Please fill this in."}
    assert session.scalar(sa.select(sa.func.count()).select_from(ErasedSubject)) == 0
