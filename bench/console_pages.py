"""Console pages benchmark: 100,000 leads and 1,000,000 consent events on PostgreSQL.

Run from the repository root with the dev extra installed:

    python bench/console_pages.py [--leads 100000] [--events 1000000] [--requests 30]

It creates a scratch database (dropped at the end), loads the real ZIP directory and 150 dealers
and fills a year of data (`console_data`: leads routed by ZIP, the unassigned pool, follow-up
turns, lead moves, outbox rows and tries, bounces and suppressions, refused signups, staff audit
entries, consent exports), seals the ledger and verifies it, then times every console page a
staff member can open (GET), signed in with the role that opens it: median and p95 of
`--requests` requests after two warm-up requests, against `/healthz` timed the same way in the
same run (the baseline). Goal: every page under 300 ms at the median. The ledger verification
(which recomputes every event's hash and every seal) is timed once on its own, as compliance
starts it from the console: the request, which only starts a job, and the job's run (without
Redis, a thread of this process). `--pages-only` leaves out sealing and verifying, which take
most of the run.
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from console_data import ROUTE_MAX_KM, dealers_and_routes, fill  # noqa: E402
from scratch import drop_postgres, scratch_postgres  # noqa: E402

from leadsvc.app import create_app  # noqa: E402
from leadsvc.auth.audit import COMMAND_LINE  # noqa: E402
from leadsvc.auth.users import create_user  # noqa: E402
from leadsvc.consent.chain import seal_pending  # noqa: E402
from leadsvc.extensions import db  # noqa: E402
from leadsvc.release import prepare_database  # noqa: E402
from leadsvc.settings import Settings  # noqa: E402

SECRET = "bench-secret-key-" + "x" * 32
PASSWORD = "bench password 123"
GOAL_MS = 300
CHARTS = ("signups", "campaigns", "campaign_days", "jobs", "consent", "dealers", "bounces")


def pages(ids: dict) -> list[tuple[str, str, str]]:
    """(name, role, path): every GET page of the console, as the role that opens it."""
    admin = [
        ("overview, 30 days", "/console/overview"),
        ("overview, 90 days", "/console/overview?days=90"),
        *((f"chart {name}, 90 days", f"/console/overview/{name}.svg?days=90") for name in CHARTS),
        ("dealers", "/console/dealers"),
        ("dealers, page 3", "/console/dealers?page=3"),
        ("dealers, search", "/console/dealers?q=bench+dealer+1"),
        ("dealer, new", "/console/dealers/new"),
        ("dealer, edit", f"/console/dealers/{ids['dealer']}/edit"),
        ("dealer, deactivate preview", f"/console/dealers/{ids['dealer']}/deactivate"),
        ("upload dealers", "/console/dealers/upload/dealers"),
        ("upload territories", "/console/dealers/upload/territories"),
        ("unassigned pool", "/console/unassigned"),
        ("unassigned pool, next page", f"/console/unassigned?after={ids['unassigned_after']}"),
        ("coverage map", "/console/coverage"),
        ("audit log", "/console/audit"),
        ("audit log, older page", f"/console/audit?before={ids['audit_before']}"),
        ("two-step sign-in", "/console/account/two-step"),
    ]
    compliance = [
        ("people, empty", "/console/people"),
        ("people, search", "/console/people?email=p4242%40example.com"),
        ("consent texts", "/console/texts"),
        ("export form", "/console/export"),
        ("ledger", "/console/ledger"),
        ("audit log (compliance)", "/console/audit"),
    ]
    dealer = [
        ("leads, new", "/console/leads"),
        ("leads, all", "/console/leads?status=all"),
        ("leads, all, older page", f"/console/leads?status=all&older_than={ids['older_than']}"),
        ("lead", f"/console/leads/{ids['lead']}"),
        ("leads CSV", "/console/leads/download.csv"),
        ("leads ADF", "/console/leads/download.adf"),
    ]
    return [
        ("sign-in page", "anonymous", "/console/login"),
        *((name, "admin", path) for name, path in admin),
        *((name, "compliance", path) for name, path in compliance),
        *((name, "dealer", path) for name, path in dealer),
    ]


def chosen_ids(engine: sa.Engine) -> dict:
    """The busiest dealer (the dealer user's and the deactivation's), and page boundaries."""
    with engine.connect() as connection:

        def one(sql: str) -> int:
            return connection.execute(sa.text(f"SELECT coalesce(({sql}), 0)")).scalar_one()

        dealer_id, code = connection.execute(
            sa.text(
                "SELECT d.id, d.code FROM dealers AS d JOIN leads AS l ON l.dealer_id = d.id "
                "WHERE d.active AND l.acknowledged_at IS NULL "
                "GROUP BY d.id ORDER BY count(*) DESC LIMIT 1"
            )
        ).one()
        return {
            "dealer_id": dealer_id,
            "dealer": code,
            "lead": one(
                f"SELECT max(id) FROM leads WHERE dealer_id = {dealer_id} "
                "AND consent_status IN ('given', 'confirmed')"
            ),
            "older_than": one(
                f"SELECT id FROM leads WHERE dealer_id = {dealer_id} ORDER BY id DESC OFFSET 49 "
                "LIMIT 1"
            ),
            "unassigned_after": one(
                "SELECT id FROM leads WHERE dealer_id IS NULL ORDER BY id OFFSET 49 LIMIT 1"
            ),
            "audit_before": one("SELECT id FROM staff_audit ORDER BY id DESC OFFSET 5000 LIMIT 1"),
            "unassigned": one("SELECT count(*) FROM leads WHERE dealer_id IS NULL"),
            "dealer_leads": one(f"SELECT count(*) FROM leads WHERE dealer_id = {dealer_id}"),
            "follow_ups": one("SELECT count(*) FROM lead_follow_ups"),
            "outbox": one("SELECT count(*) FROM outbox"),
        }


def seal(app, events: int) -> None:
    """Seal every event. PostgreSQL seals only below the oldest open transaction of the whole
    server, so another client's open transaction delays it: try again for up to five minutes."""
    started, sealed = time.perf_counter(), 0
    with app.app_context(), db.sessionmaker(app)() as session:
        while sealed < events and time.perf_counter() - started < 300:
            sealed += seal_pending(session).events
            if sealed < events:
                time.sleep(2)
    print(f"sealed {sealed:,} events in {time.perf_counter() - started:.1f} s")
    assert sealed == events, "another client's transaction stayed open: run again"


def verify_from_console(client, engine: sa.Engine) -> None:
    """The full verification as compliance starts it: the console's request (a job starts),
    then the job's run until its result is recorded."""
    page = client.get("/console/ledger").text
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    started = time.perf_counter()
    reply = client.post("/console/ledger", data={"csrf_token": token})
    request_ms = (time.perf_counter() - started) * 1000
    assert reply.status_code == 303, reply.status_code
    query = sa.text(
        "SELECT ok, events, seals, extract(epoch FROM finished_at - started_at) "
        "FROM consent_verifications ORDER BY id DESC LIMIT 1"
    )
    while True:
        with engine.connect() as connection:
            ok, events, seals, seconds = connection.execute(query).one()
        if ok is not None:
            break
        time.sleep(1)
    assert ok, "the ledger did not verify"
    print(
        f"ledger verification from the console: the request {request_ms:.0f} ms (a job "
        f"starts); the job: all {events:,} events, {seals} seals in {seconds:.1f} s "
        f"= {events / float(seconds):,.0f} events/s"
    )


def sign_in(client, email: str) -> None:
    page = client.get("/console/login").text
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    reply = client.post(
        "/console/login", data={"email": email, "password": PASSWORD, "csrf_token": token}
    )
    assert reply.status_code == 303, reply.status_code


def timed(client, path: str, requests: int) -> tuple[float, float, float]:
    """First request, then median and p95 of `requests` requests (ms) after a second warm-up."""
    samples = []
    for _ in range(requests + 2):
        started = time.perf_counter()
        reply = client.get(path)
        samples.append((time.perf_counter() - started) * 1000)
        assert reply.status_code == 200, (path, reply.status_code)
    first, samples = samples[0], sorted(samples[2:])
    p95 = samples[max(math.ceil(len(samples) * 0.95) - 1, 0)]  # nearest rank
    return first, statistics.median(samples), p95


def clients(app, dealer_code: str) -> dict:
    with app.app_context(), db.sessionmaker(app)() as session:
        create_user(session, COMMAND_LINE, "admin@example.com", PASSWORD, "admin")
        create_user(session, COMMAND_LINE, "compliance@example.com", PASSWORD, "compliance")
        create_user(session, COMMAND_LINE, "dealer@example.com", PASSWORD, "dealer", dealer_code)
    signed_in = {"anonymous": app.test_client()}
    for role in ("admin", "compliance", "dealer"):
        signed_in[role] = app.test_client()
        sign_in(signed_in[role], f"{role}@example.com")
    return signed_in


def build(url: str, instance: str, args):
    app = create_app(
        Settings(
            database_url=url,
            secret_key=SECRET,
            instance_path=Path(instance),
            rate_limits_enabled=False,
            route_max_km=ROUTE_MAX_KM,
            log_level="WARNING",
        )
    )
    # As under test: no in-process outbox drainer (with Redis, production has none in the web
    # process either); it would deliver, seal and move leads in the background of the timings.
    app.testing = True
    started = time.perf_counter()
    prepare_database(app)  # the schema and the ZIP directory
    dealers_and_routes(app)
    fill(db.engine(app), args.leads, args.events)
    print(
        f"filled {args.leads:,} leads and {args.events:,} consent events "
        f"in {time.perf_counter() - started:.1f} s"
    )
    return app


def report_pages(by_role: dict, ids: dict, requests: int) -> list[str]:
    _, base_median, base_p95 = timed(by_role["admin"], "/healthz", requests)
    print(f"  {'/healthz (baseline)':<32}: median {base_median:7.1f} ms, p95 {base_p95:7.1f} ms")
    slow = []
    for name, role, path in pages(ids):
        first, median, p95 = timed(by_role[role], path, requests)
        verdict = "ok" if median < GOAL_MS else "SLOW"
        slow += [name] if verdict == "SLOW" else []
        print(
            f"  {name:<32}: median {median:7.1f} ms, p95 {p95:7.1f} ms, first {first:7.1f} ms"
            f"  = {median / base_median:6.1f}x baseline  (goal < {GOAL_MS} ms: {verdict})"
        )
    return slow


def measure(url: str, instance: str, args) -> None:
    app = build(url, instance, args)
    engine = db.engine(app)
    ids = chosen_ids(engine)
    print(
        f"dealer {ids['dealer']}: {ids['dealer_leads']:,} leads; unassigned pool "
        f"{ids['unassigned']:,}; follow-up turns {ids['follow_ups']:,}; outbox {ids['outbox']:,}"
    )
    by_role = clients(app, ids["dealer"])
    if not args.pages_only:
        seal(app, args.events)
        verify_from_console(by_role["compliance"], engine)
    print(f"console pages benchmark ({args.leads:,} leads, {args.events:,} consent events)")
    slow = report_pages(by_role, ids, args.requests)
    print(f"pages over {GOAL_MS} ms at the median: {', '.join(slow) if slow else 'none'}")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument(
        "--pages-only", action="store_true", help="skip sealing and verifying the ledger"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    url = scratch_postgres(args.postgres)
    try:
        with tempfile.TemporaryDirectory() as instance:
            measure(url, instance, args)
    finally:
        if args.keep:
            print(f"kept {url}")
        else:
            drop_postgres(args.postgres, url)


if __name__ == "__main__":
    main()
