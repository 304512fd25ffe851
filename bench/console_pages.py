"""Console pages benchmark: 100,000 leads and 1,000,000 consent events on PostgreSQL.

Run from the repository root with the dev extra installed:

    python bench/console_pages.py [--leads 100000] [--events 1000000] [--requests 30]

It creates a scratch database (dropped at the end), fills it with INSERT ... SELECT
generate_series (leads over a year for 20 dealers, consent events, outbox rows and their tries,
staff audit entries), seals the ledger, and times each console page through the test client,
signed in with the role that uses it: median and p95 of `--requests` requests after two warm-up
requests, against `/healthz` timed the same way in the same run (the baseline). Goal: every page
under 300 ms at the median. The ledger verification (which recomputes every event's hash and
every seal) is timed once on its own: it is a deliberate full pass, not a page view
(`--pages-only` leaves out sealing and verifying, which take most of the run).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scratch import drop_postgres, scratch_postgres  # noqa: E402

from leadsvc.app import create_app  # noqa: E402
from leadsvc.auth.audit import COMMAND_LINE  # noqa: E402
from leadsvc.auth.users import create_user  # noqa: E402
from leadsvc.consent.chain import seal_pending  # noqa: E402
from leadsvc.consent.verifications import run_verification  # noqa: E402
from leadsvc.db import upgrade_schema  # noqa: E402
from leadsvc.extensions import db  # noqa: E402
from leadsvc.settings import Settings  # noqa: E402

SECRET = "bench-secret-key-" + "x" * 32
PASSWORD = "bench password 123"
GOAL_MS = 300

FILL = """
INSERT INTO zip_codes (zip5, city, state, latitude, longitude)
VALUES ('10001', 'New York', 'NY', 40.75, -73.99);
INSERT INTO dealers (code, name, street, city, state, zip5, phone, lead_email, latitude, longitude,
                     coordinates_from, active, created_at, updated_at)
SELECT 'B' || n, 'Bench dealer ' || n, '1 Main St', 'Town', 'NY', '10001', '(800) 555-0100',
       'd' || n || '@example.com', 40.75, -73.99, 'zip', true, now(), now()
FROM generate_series(1, 20) AS n;
INSERT INTO leads (email, email_key, email_as_typed, first_name, last_name, zip5, consent_status,
                   consent_text_version, signup_count, dealer_id, routing_reason, delivery_seq,
                   utm, created_at, updated_at)
SELECT 'p' || n || '@example.com', 'p' || n || '@example.com', 'p' || n || '@example.com',
       'First', 'Last', '10001',
       (ARRAY['given', 'given', 'given', 'pending', 'withdrawn'])[1 + n % 5], 1, 1,
       CASE WHEN n % 50 = 0 THEN NULL ELSE 1 + n % 20 END, 'nearest', n,
       CASE WHEN n % 3 = 0 THEN NULL
            ELSE jsonb_build_object('utm_source', 'src' || n % 4, 'utm_campaign', 'camp' || n % 7)
       END,
       now() - make_interval(secs => (:leads - n) * 31536000.0 / :leads),
       now() - make_interval(secs => (:leads - n) * 31536000.0 / :leads)
FROM generate_series(1, :leads) AS n;
INSERT INTO consent_events (lead_id, subject, event_type, text_version, occurred_at, ip,
                            user_agent, source_url, request_id)
SELECT 1 + n % :leads, 'p' || (1 + n % :leads) || '@example.com',
       CASE WHEN n % 10 = 0 THEN 'withdrawn' ELSE 'given' END, 1,
       now() - make_interval(secs => (:events - n) * 31536000.0 / :events),
       '203.0.113.' || (n % 250),
       'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)',
       'https://www.miniusa.com/stay-in-the-loop?utm_source=bench', md5(n::text)
FROM generate_series(1, :events) AS n;
INSERT INTO outbox (kind, lead_id, dealer_id, payload, status, attempts, generation, created_at,
                    updated_at, sent_at)
SELECT 'welcome_email', n, NULL, jsonb_build_object('lead_id', n),
       CASE WHEN n % 100 = 0 THEN 'failed' ELSE 'sent' END, 1, 1,
       l.created_at, l.created_at, l.created_at
FROM generate_series(1, :leads) AS n JOIN leads AS l ON l.id = n;
INSERT INTO outbox_attempts (outbox_id, number, runner, outcome, started_at, finished_at)
SELECT id, 1, 'bench', status, created_at, created_at + interval '1 second' FROM outbox;
INSERT INTO staff_audit (at, actor, action, target, ip)
SELECT now() - make_interval(mins => n), 'cli', 'lead.acknowledge', 'lead ' || n, '127.0.0.1'
FROM generate_series(1, 20000) AS n
"""

#: (name, role, path): each page as the role that uses it opens it.
PAGES = (
    ("overview", "admin", "/console/overview"),
    ("overview, 90 days", "admin", "/console/overview?days=90"),
    ("overview chart (signups)", "admin", "/console/overview/signups.svg?days=90"),
    ("people search", "compliance", "/console/people?email=p4242%40example.com"),
    ("leads list (dealer)", "dealer", "/console/leads"),
    ("audit log", "compliance", "/console/audit"),
    ("ledger page", "compliance", "/console/ledger"),
)


def fill(engine: sa.Engine, leads: int, events: int) -> None:
    with engine.begin() as connection:
        for statement in FILL.split(";\n"):
            if statement.strip():
                connection.execute(sa.text(statement), {"leads": leads, "events": events})
    # What autovacuum does to tables of this age (index-only scans rely on its visibility map).
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sa.text("VACUUM ANALYZE"))


def seal(app, events: int) -> None:
    """Seal every event. PostgreSQL seals only below the oldest open transaction of the whole
    server, so another client's open transaction delays it: try again for up to two minutes."""
    started, sealed = time.perf_counter(), 0
    with app.app_context(), db.sessionmaker(app)() as session:
        while sealed < events and time.perf_counter() - started < 120:
            sealed += seal_pending(session).events
            if sealed < events:
                time.sleep(2)
    print(f"sealed {sealed:,} events in {time.perf_counter() - started:.1f} s")
    assert sealed == events, "another client's transaction stayed open: run again"


def sign_in(client, email: str) -> None:
    page = client.get("/console/login").text
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    reply = client.post(
        "/console/login", data={"email": email, "password": PASSWORD, "csrf_token": token}
    )
    assert reply.status_code == 303, reply.status_code


def timed(client, path: str, requests: int) -> tuple[float, float]:
    """Median and p95 of `requests` requests (ms), after two warm-up requests."""
    for _ in range(2):
        assert client.get(path).status_code == 200, path
    samples = []
    for _ in range(requests):
        started = time.perf_counter()
        reply = client.get(path)
        samples.append((time.perf_counter() - started) * 1000)
        assert reply.status_code == 200, (path, reply.status_code)
    samples.sort()
    return statistics.median(samples), samples[max(int(len(samples) * 0.95) - 1, 0)]


def clients(app) -> dict:
    with app.app_context(), db.sessionmaker(app)() as session:
        create_user(session, COMMAND_LINE, "admin@example.com", PASSWORD, "admin")
        create_user(session, COMMAND_LINE, "compliance@example.com", PASSWORD, "compliance")
        create_user(session, COMMAND_LINE, "dealer@example.com", PASSWORD, "dealer", "B7")
    signed_in = {}
    for role in ("admin", "compliance", "dealer"):
        signed_in[role] = app.test_client()
        sign_in(signed_in[role], f"{role}@example.com")
    return signed_in


def measure(url: str, instance: str, args) -> None:
    app = create_app(
        Settings(
            database_url=url,
            secret_key=SECRET,
            instance_path=Path(instance),
            rate_limits_enabled=False,
        )
    )
    engine = db.engine(app)
    upgrade_schema(engine)
    started = time.perf_counter()
    fill(engine, args.leads, args.events)
    print(
        f"filled {args.leads:,} leads and {args.events:,} consent events "
        f"in {time.perf_counter() - started:.1f} s"
    )
    if not args.pages_only:
        seal(app, args.events)
    by_role = clients(app)
    base_median, base_p95 = timed(by_role["admin"], "/healthz", args.requests)
    print(f"console pages benchmark ({args.leads:,} leads, {args.events:,} consent events)")
    print(f"  {'/healthz (baseline)':<28}: median {base_median:7.1f} ms, p95 {base_p95:7.1f} ms")
    for name, role, path in PAGES:
        median, p95 = timed(by_role[role], path, args.requests)
        verdict = "ok" if median < GOAL_MS else "SLOW"
        print(
            f"  {name:<28}: median {median:7.1f} ms, p95 {p95:7.1f} ms  = "
            f"{median / base_median:5.1f}x baseline  (goal < {GOAL_MS} ms: {verdict})"
        )
    if not args.pages_only:
        verify(app)
    engine.dispose()


def verify(app) -> None:
    with app.app_context(), db.sessionmaker(app)() as session:
        started = time.perf_counter()
        report = run_verification(session, "bench")
        seconds = time.perf_counter() - started
    assert report.ok, report.problem
    print(
        f"  ledger verification (all {report.events:,} events, {report.seals} seals): "
        f"{seconds:.1f} s = {report.events / seconds:,.0f} events/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument(
        "--pages-only", action="store_true", help="skip sealing and verifying the ledger"
    )
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    url = scratch_postgres(args.postgres)
    try:
        with tempfile.TemporaryDirectory() as instance:
            measure(url, instance, args)
    finally:
        drop_postgres(args.postgres, url)


if __name__ == "__main__":
    main()
