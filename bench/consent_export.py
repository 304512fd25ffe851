"""Consent export benchmark: 1,000,000 consent events on PostgreSQL.

Run from the repository root with the dev extra installed:

    python bench/consent_export.py [--events 1000000] [--postgres postgresql+psycopg://...]

It creates a scratch database (dropped at the end), fills it with consent events (for 10,000
leads routed to 20 dealers), and prints, measured in this one run:

1. export throughput (rows/s) of `leadsvc export consent` (the CSV stream with the joins, the
   text hash, the dealer, the person's status and formula neutralisation) against a plain
   `COPY consent_events TO STDOUT (FORMAT csv)` of the same table (goal: at least half its speed),
   and the same for JSON lines;
2. the peak memory growth of the exporting process (goal: flat, under 50 MB).

The export reads its blocks of lines over `leadsvc.consent.export.PG_STREAMS` connections (two
PostgreSQL backends on one snapshot), the baseline over one; for comparison, the export over a
single connection is printed too (not a goal).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scratch import drop_postgres, scratch_postgres  # noqa: E402

from leadsvc.app import create_app  # noqa: E402
from leadsvc.consent.export import PG_STREAMS as STREAMS  # noqa: E402
from leadsvc.db import upgrade_schema  # noqa: E402
from leadsvc.extensions import db  # noqa: E402
from leadsvc.settings import Settings  # noqa: E402

SECRET = "bench-secret-key-" + "x" * 32

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
                   created_at, updated_at)
SELECT 'p' || n || '@example.com', 'p' || n || '@example.com', 'p' || n || '@example.com',
       'First', 'Last', '10001', 'given', 1, 1, 1 + n % 20, 'nearest', n, now(), now()
FROM generate_series(1, 10000) AS n;
INSERT INTO consent_events (lead_id, subject, event_type, text_version, occurred_at, ip,
                            user_agent, source_url, request_id, digest)
SELECT 1 + n % 10000, 'p' || (1 + n % 10000) || '@example.com',
       CASE WHEN n % 10 = 0 THEN 'withdrawn' ELSE 'given' END, 1,
       now() - make_interval(secs => n), '203.0.113.' || (n % 250),
       'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)',
       'https://www.miniusa.com/stay-in-the-loop?utm_source=bench', md5(n::text) || md5(n::text),
       md5(n::text)
FROM generate_series(1, :events) AS n;
ANALYZE;
"""

EXPORT_SCRIPT = textwrap.dedent(
    """
    import resource, sys, time
    from datetime import UTC, datetime
    from pathlib import Path
    from leadsvc.app import create_app
    from leadsvc.consent import export
    from leadsvc.consent.export import ExportCounter, stream_export
    from leadsvc.extensions import db
    from leadsvc.settings import Settings

    url, fmt, instance, streams = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    export.PG_STREAMS = streams
    app = create_app(Settings(database_url=url, secret_key="k" * 40, instance_path=Path(instance)))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    counter = ExportCounter(fmt)
    started = time.perf_counter()
    size = 0
    for chunk in stream_export(db.engine(app), fmt, datetime(1970, 1, 1, tzinfo=UTC),
                               datetime.now(UTC), "bench", counter):
        size += len(chunk)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(counter.rows(), elapsed, size, before / 1024, after / 1024)
    """
)


def plain_copy(engine: sa.Engine) -> tuple[int, float]:
    """Rows/s of a plain COPY of the table, read to the end in this process."""
    with engine.connect() as connection:
        cursor = connection.connection.driver_connection.cursor()
        started, rows = time.perf_counter(), 0
        with cursor.copy("COPY consent_events TO STDOUT WITH (FORMAT csv, HEADER true)") as copy:
            for data in copy:
                rows += bytes(data).count(b"\n")
        return rows - 1, time.perf_counter() - started


def export(url: str, fmt: str, instance: str, streams: int) -> tuple[int, float, int, float, float]:
    result = subprocess.run(
        [sys.executable, "-c", EXPORT_SCRIPT, url, fmt, instance, str(streams)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    rows, elapsed, size, before, after = result.stdout.split()
    return int(rows), float(elapsed), int(size), float(before), float(after)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    url = scratch_postgres(args.postgres)
    try:
        with tempfile.TemporaryDirectory() as instance:
            app = create_app(
                Settings(database_url=url, secret_key=SECRET, instance_path=Path(instance))
            )
            engine = db.engine(app)
            upgrade_schema(engine)
            started = time.perf_counter()
            with engine.begin() as connection:
                for statement in FILL.split(";\n"):
                    if statement.strip():
                        connection.execute(sa.text(statement), {"events": args.events})
            print(f"filled {args.events:,} consent events in {time.perf_counter() - started:.1f} s")
            copy_rows, copy_seconds = plain_copy(engine)
            results = {fmt: export(url, fmt, instance, STREAMS) for fmt in ("csv", "jsonl")}
            single = {fmt: export(url, fmt, instance, 1) for fmt in ("csv", "jsonl")}
            engine.dispose()
    finally:
        drop_postgres(args.postgres, url)

    base = copy_rows / copy_seconds
    print(
        f"consent export benchmark ({copy_rows:,} events, PostgreSQL, export over {STREAMS} "
        "connections)"
    )
    print(f"  plain COPY of the table (baseline)  : {base:>12,.0f} rows/s  ({copy_seconds:.2f} s)")
    for fmt, (rows, seconds, size, before, after) in results.items():
        rate = rows / seconds
        print(
            f"  leadsvc export, {fmt:<5}               : {rate:>12,.0f} rows/s  ({seconds:.2f} s, "
            f"{size / 1e6:.0f} MB)  = {rate / base:.2f}x baseline (goal >= 0.5x)"
        )
        print(
            f"    exporting process peak RSS        : {before:.0f} MB before, {after:.0f} MB after"
            f" = +{after - before:.1f} MB (goal < 50 MB growth)"
        )
        assert rows == copy_rows, (rows, copy_rows)
    for fmt, (rows, seconds, *_) in single.items():
        print(
            f"  for comparison, {fmt:<5} over 1 connection: {rows / seconds:>10,.0f} rows/s  "
            f"({seconds:.2f} s)  = {rows / seconds / base:.2f}x baseline"
        )
        assert rows == copy_rows, (rows, copy_rows)


if __name__ == "__main__":
    main()
