"""The consent export on awkward values, across blocks and connections, and stopped early."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from leadsvc.consent import export
from leadsvc.consent.models import ConsentEvent, ConsentText, ExportAudit
from leadsvc.dealers.directory import import_dealers
from leadsvc.dealers.formats import spreadsheet_safe
from leadsvc.dealers.models import Dealer
from leadsvc.extensions import db
from leadsvc.leads.models import Lead
from tests.factories import dealer_csv, dealer_line, valid_signup

T0 = datetime(2030, 1, 1, tzinfo=UTC)
#: The event types we write, and one we never do (not to be taken as one of ours).
TYPES = ["given", "withdrawn", "confirmed", "erased", 'x"y\\z']
#: (subject, ip, user_agent, source_url, request_id): quotes, commas, backslashes, formula
#: starts (= + - @ tab CR), a control character, non-ASCII text, empty text and NULLs.
AWKWARD = [
    (
        'a"b,c\\d@example.com',
        "203.0.113.9",
        'Mozilla "quoted", comma \\ back',
        "https://x/?a=1,2",
        "r1",
    ),
    ("-1+2@example.com", "+1", "=cmd|' /C calc'!A0", "@SUM(1)", "-r2"),
    ("\ttab@example.com", None, "\rcr agent", "", None),
    ("ünïcødé@exämple.com", "::1", "ctrl \x01 char \x1f end", 'https://ü.example/ä?q="x"', "=r3"),
    ("", "", "", None, "\\"),
]


@pytest.fixture
def events(client, session):
    """Events with awkward values, for a lead with a dealer, a lead without one, no lead and a
    lead that is gone; returns their ids in order."""
    import_dealers(session, dealer_csv(dealer_line("NY1", "10019")))
    for email in ("kept@example.com", "undealt@example.com"):
        reply = client.post("/api/v1/signups", json=valid_signup(email=email))
        assert reply.status_code == 202, reply.get_json()
    routed, unrouted = session.scalars(sa.select(Lead.id).order_by(Lead.id)).all()
    session.execute(sa.update(Lead).where(Lead.id == unrouted).values(dealer_id=None))
    assert session.get(Lead, routed).dealer_id is not None
    version = session.scalar(sa.select(ConsentText.version).where(ConsentText.active))
    leads = zip([routed, None, 999_999, unrouted, routed], AWKWARD, strict=True)
    session.execute(
        sa.insert(ConsentEvent),
        [
            {
                "lead_id": lead,
                "subject": subject,
                "event_type": TYPES[n],
                "text_version": version,
                "occurred_at": T0 + timedelta(seconds=n),
                "ip": ip,
                "user_agent": agent,
                "source_url": url,
                "request_id": request_id,
            }
            for n, (lead, (subject, ip, agent, url, request_id)) in enumerate(leads)
        ],
    )
    session.commit()
    return session.scalars(
        sa.select(ConsentEvent.id).where(ConsentEvent.occurred_at >= T0).order_by(ConsentEvent.id)
    ).all()


def expected_rows(session, ids) -> list[dict]:
    """What the export must say of each event, read back with the ORM."""
    rows = []
    for event_id in ids:
        event = session.get(ConsentEvent, event_id)
        lead = session.get(Lead, event.lead_id) if event.lead_id is not None else None
        dealer = session.get(Dealer, lead.dealer_id) if lead and lead.dealer_id else None
        rows.append(
            {
                "event_id": event.id,
                "occurred_at": event.occurred_at,
                "event_type": event.event_type,
                "subject": event.subject,
                "text_version": event.text_version,
                "text_sha256": session.get(ConsentText, event.text_version).sha256,
                "ip": event.ip,
                "user_agent": event.user_agent,
                "source_url": event.source_url,
                "request_id": event.request_id,
                "dealer_code": dealer.code if dealer else None,
                "current_status": lead.consent_status if lead is not None else "purged",
            }
        )
    return rows


def run_export(app, fmt: str, start=T0, end=T0 + timedelta(days=1)) -> tuple[bytes, int]:
    counter = export.ExportCounter(fmt)
    chunks = export.stream_export(db.engine(app), fmt, start, end, "test", counter)
    return b"".join(chunks), counter.rows()


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_csv_export_of_awkward_values(app, session, events):
    body, rows = run_export(app, "csv")
    records = list(csv.DictReader(io.StringIO(body.decode("utf-8"), newline="")))
    assert rows == len(records) == len(events)
    for record, want in zip(records, expected_rows(session, events), strict=True):
        assert when(record.pop("occurred_at")) == want.pop("occurred_at")
        assert record == {
            key: spreadsheet_safe(value) if key in export._TEXT_COLUMNS else str(value or "")
            for key, value in want.items()
        }


def test_jsonl_export_of_awkward_values(app, session, events):
    body, rows = run_export(app, "jsonl")
    lines = body.decode("utf-8").split("\n")
    assert lines.pop() == "" and rows == len(lines) == len(events)
    for line, want in zip(lines, expected_rows(session, events), strict=True):
        record = json.loads(line)  # strict: a raw control character would fail here
        assert when(record.pop("occurred_at")) == want.pop("occurred_at")
        assert record == want


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_postgresql_jsonl_lines_are_those_of_json_build_object(app, session, events):
    body, _ = run_export(app, "jsonl")
    pairs = ", ".join(f"'{c}', {export._SOURCES[c]}" for c in export.COLUMNS)
    query = f"SELECT json_build_object({pairs})::text {export._FROM.format(start=':s', end=':e')}"
    wanted = session.scalars(sa.text(query), {"s": T0, "e": T0 + timedelta(days=1)}).all()
    assert body.decode("utf-8").split("\n")[:-1] == wanted


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_postgresql_csv_is_that_of_copy_csv_with_every_text_field_quoted(app, session, events):
    body, _ = run_export(app, "csv")
    # Formula starts neutralised, then PostgreSQL's own CSV writer, every text field quoted.
    starts = "'=', '+', '-', '@', E'\\t', E'\\r'"
    safe = f"CASE WHEN left({{0}}, 1) IN ({starts}) THEN '''' || {{0}} ELSE {{0}} END"
    sources = {
        c: safe.format(s) if c in export._TEXT_COLUMNS else s for c, s in export._SOURCES.items()
    }
    columns = ", ".join(f"{sources[c]} AS {c}" for c in export.COLUMNS)
    quoted = ", ".join(
        c for c in export.COLUMNS if c not in ("event_id", "occurred_at", "text_version")
    )
    window = export._FROM.format(
        start=f"'{T0.isoformat()}'", end=f"'{(T0 + timedelta(days=1)).isoformat()}'"
    )
    sql = (
        f"COPY (SELECT {columns} {window}) TO STDOUT "
        f"(FORMAT csv, HEADER true, FORCE_QUOTE ({quoted}))"
    )
    with session.connection().connection.driver_connection.cursor() as cursor:
        with cursor.copy(sql) as copy:
            wanted = b"".join(bytes(data) for data in copy)
    assert body.count(b"\n") == len(events) + 1
    assert body == wanted


@pytest.mark.parametrize("fmt", export.FORMATS)
def test_export_across_many_blocks_is_the_range_once_each_in_order(
    app, session, events, monkeypatch, fmt
):
    # Blocks of 2 ids over 2 connections, a range that starts and ends inside blocks, and ids
    # outside the time range in between (earlier events inserted later).
    monkeypatch.setattr(export, "BLOCK_EVENTS", 2)
    version = session.scalar(sa.select(ConsentText.version).where(ConsentText.active))
    for offset in (-1, 3.5, -3):
        session.execute(
            sa.insert(ConsentEvent),
            [
                {
                    "lead_id": None,
                    "subject": f"late{n}@example.com",
                    "event_type": "given",
                    "text_version": version,
                    "occurred_at": T0 + timedelta(seconds=offset),
                }
                for n in range(7)
            ],
        )
    session.commit()
    start, end = T0 + timedelta(seconds=1), T0 + timedelta(seconds=4)
    wanted = session.scalars(
        sa.select(ConsentEvent.id)
        .where(ConsentEvent.occurred_at >= start, ConsentEvent.occurred_at < end)
        .order_by(ConsentEvent.id)
    ).all()
    assert len(wanted) == 3 + 7
    body, rows = run_export(app, fmt, start, end)
    text = body.decode("utf-8")
    if fmt == "csv":
        ids = [int(r["event_id"]) for r in csv.DictReader(io.StringIO(text, newline=""))]
    else:
        ids = [json.loads(line)["event_id"] for line in text.splitlines()]
    assert ids == wanted and rows == len(wanted)
    audit = session.scalars(sa.select(ExportAudit).order_by(ExportAudit.id.desc())).first()
    assert (audit.rows, audit.format) == (len(wanted), fmt)


def test_export_of_an_empty_range(app, events):
    before = T0 - timedelta(days=2), T0 - timedelta(days=1)
    assert run_export(app, "jsonl", *before) == (b"", 0)
    body, rows = run_export(app, "csv", *before)
    assert (body.decode().splitlines(), rows) == ([",".join(export.COLUMNS)], 0)


def test_an_export_stopped_early_gives_its_connections_back(app, session, events, monkeypatch):
    monkeypatch.setattr(export, "BLOCK_EVENTS", 1)
    engine = db.engine(app)
    held = engine.pool.checkedout()  # the test session's
    chunks = export.stream_export(engine, "jsonl", T0, T0 + timedelta(days=1), "test")
    assert json.loads(next(chunks).split(b"\n")[0])["event_id"] == events[0]
    chunks.close()
    assert engine.pool.checkedout() == held
    audit = session.scalars(sa.select(ExportAudit).order_by(ExportAudit.id.desc())).first()
    assert audit.finished_at is None


def running_copies(session) -> int:
    """Backends of this database running a COPY now (read in a transaction of its own, since
    PostgreSQL keeps one view of pg_stat_activity per transaction)."""
    session.rollback()
    count = session.scalar(
        sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND state = 'active' AND query LIKE 'COPY (%'"
        )
    )
    session.rollback()
    return count


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("fmt", export.FORMATS)
def test_an_export_stopped_mid_copy_cancels_it(app, session, events, fmt):
    # About 25 MB of lines, far more than the sockets hold: both COPYs are still running, their
    # backends waiting to send, when the consumer goes away.
    session.execute(
        sa.text(
            "INSERT INTO consent_events (lead_id, subject, event_type, text_version, occurred_at,"
            " user_agent, source_url) "
            "SELECT NULL, 'bulk' || n || '@example.com', 'given', 1, :at, repeat('a', 500),"
            " 'https://example.com/' || repeat('b', 1500) FROM generate_series(1, 10000) AS n"
        ),
        {"at": T0 + timedelta(seconds=30)},
    )
    session.commit()
    engine = db.engine(app)
    held = engine.pool.checkedout()
    chunks = export.stream_export(engine, fmt, T0, T0 + timedelta(days=1), "test")
    first = b"".join(next(chunks) for _ in range(2 if fmt == "csv" else 1))
    assert str(events[0]).encode() in first
    assert running_copies(session) == export.PG_STREAMS
    chunks.close()
    assert running_copies(session) == 0
    assert engine.pool.checkedout() == held
    # The connections went back to the pool fit for the next export.
    body, rows = run_export(app, fmt)
    assert rows == len(events) + 10000
    assert body.count(b"\n") == rows + (1 if fmt == "csv" else 0)
