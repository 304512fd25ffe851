"""Routing benchmark: request-path lookups vs per-request geocoding, table rebuild, web RSS.

Run from the repository root with the dev extra installed:

    python bench/routing.py [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test]

It creates a scratch PostgreSQL database (dropped at the end), loads the ZIP directory and 150
dealers placed on real ZIP centres (fixed seed), and prints, all measured in this one run:

1. routing lookups per second on the request path (`routing_table().route_for_zip`) against the
   baseline a naive service would run per request: `pgeocode.Nominatim("us").query_postal_code`
   plus a haversine to every dealer (goal: at least 1000x faster);
2. the time to rebuild the full routing table with 150 dealers (goal: under 1 s), on PostgreSQL
   and on SQLite;
3. the resident memory of a web process with the ZIP directory and routing table loaded and 50
   signups served, against a bare Python + Flask process (goal: under 100 MB). That process
   reads its settings from the environment like `leadsvc serve`, with `RATE_LIMITS_ENABLED=false`.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scratch import drop_postgres, scratch_postgres  # noqa: E402

from leadsvc.app import create_app  # noqa: E402
from leadsvc.dealers.directory import import_dealers  # noqa: E402
from leadsvc.dealers.route_builder import rebuild_routes  # noqa: E402
from leadsvc.dealers.routing import routing_table  # noqa: E402
from leadsvc.extensions import db  # noqa: E402
from leadsvc.geo.distance import haversine_km  # noqa: E402
from leadsvc.geo.source import register_pgeocode_source  # noqa: E402
from leadsvc.release import prepare_database  # noqa: E402
from leadsvc.settings import Settings  # noqa: E402

DEALERS = 150
SECRET = "bench-secret-key-" + "x" * 32


def dealer_csv(session, count: int, seed: int = 7) -> str:
    """`count` dealers on distinct real ZIP centres (a fixed random sample)."""
    zips = session.execute(
        sa.text("SELECT zip5, state FROM zip_codes WHERE latitude IS NOT NULL ORDER BY zip5")
    ).all()
    chosen = random.Random(seed).sample(zips, count)
    lines = [
        "code,name,street,city,state,zip,phone,lead_email,webhook_url,webhook_secret,latitude,longitude"
    ]
    for n, (zip5, state) in enumerate(chosen, 1):
        lines.append(
            f"B{n:03d},Bench dealer {n},1 Main St,Town,{state},{zip5},(800) 555-0100,"
            f"d{n}@example.com,,,,"
        )
    return "\n".join(lines) + "\n"


def build_app(url: str, instance: Path):
    app = create_app(Settings(database_url=url, secret_key=SECRET, instance_path=instance))
    prepare_database(app)
    with db.sessionmaker(app)() as session:
        report = import_dealers(session, dealer_csv(session, DEALERS))
        assert report.applied and report.count("created") == DEALERS, report.rejected
    return app


def time_rebuilds(app, runs: int = 5) -> list[float]:
    times = []
    with db.sessionmaker(app)() as session:
        for _ in range(runs):
            started = time.perf_counter()
            rebuild_routes(session)
            session.commit()
            times.append(time.perf_counter() - started)
    return times


def lookups_per_second(app, zips: list[str], seconds: float = 2.0) -> float:
    with app.app_context():
        table = routing_table()
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            for zip5 in zips:
                routing_table().route_for_zip(zip5)
            count += len(zips)
        assert table.route_for_zip(zips[0]) is not None
    return count / (time.perf_counter() - started)


def baseline_lookups_per_second(
    app, instance: Path, zips: list[str], seconds: float = 2.0
) -> float:
    """What a service without a routing table does per request: geocode, then measure to all."""
    import pgeocode

    register_pgeocode_source(instance / "pgeocode")
    nominatim = pgeocode.Nominatim("us")
    with db.sessionmaker(app)() as session:
        dealers = np.array(
            session.execute(
                sa.text("SELECT latitude, longitude FROM dealers WHERE active ORDER BY code")
            ).all()
        )
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for zip5 in zips[:50]:
            place = nominatim.query_postal_code(zip5)
            distances = haversine_km(np.array([[place.latitude, place.longitude]]), dealers)
            distances.argmin()
            count += 1
    return count / (time.perf_counter() - started)


RSS_SCRIPT = textwrap.dedent(
    """
    import sys

    def rss_mb():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

    if sys.argv[1] == "baseline":
        import flask  # noqa: F401
        app = flask.Flask("baseline")
    else:
        from leadsvc.app import create_app
        from leadsvc.dealers.routing import routing_table
        from leadsvc.geo.directory import zip_directory
        app = create_app()  # settings from the environment rss_mb() gives it
        client = app.test_client()
        for n in range(50):
            reply = client.post("/api/v1/signups", json={"first_name": "Bench", "last_name": "Mark",
                                "email": f"rss{n}@example.com", "zip": "10001"})
            assert reply.status_code == 202, reply.get_data(as_text=True)
        with app.app_context():
            assert len(zip_directory()) > 40000 and len(routing_table()) > 40000
        assert "pandas" not in sys.modules
    print(f"{rss_mb():.1f}")
    """
)


def rss_env(database_url: str, instance: Path) -> dict[str, str]:
    """A web process's environment: the scratch database, and rate limits off (its 50 signups
    come from one client address, over the default SIGNUP_LIMIT_PER_IP of 30 a minute)."""
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "SECRET_KEY": SECRET,
        "INSTANCE_PATH": str(instance),
        "RATE_LIMITS_ENABLED": "false",
        "LOG_LEVEL": "WARNING",
    }


def rss_mb(kind: str, env: dict[str, str] | None = None) -> float:
    result = subprocess.run(
        [sys.executable, "-c", RSS_SCRIPT, kind],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr)
    return float(result.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        instance = Path(tmp)
        pg_url = scratch_postgres(args.postgres)
        try:
            app = build_app(pg_url, instance)
            with db.sessionmaker(app)() as session:
                zips = [z for (z,) in session.execute(sa.text("SELECT zip5 FROM zip_routes"))]
            sample = random.Random(1).sample(zips, 1000)

            fast = lookups_per_second(app, sample)
            slow = baseline_lookups_per_second(app, instance, sample)
            pg_rebuilds = time_rebuilds(app)
            sqlite_app = build_app(f"sqlite:///{instance / 'bench.db'}", instance)
            sqlite_rebuilds = time_rebuilds(sqlite_app)
            web_rss = rss_mb("app", rss_env(pg_url, instance))
            base_rss = rss_mb("baseline")
            db.engine(app).dispose()
            db.engine(sqlite_app).dispose()
        finally:
            drop_postgres(args.postgres, pg_url)

    print(f"routing benchmark ({DEALERS} dealers, {len(zips)} routed ZIPs)")
    print(f"  lookups/s, routing table in memory : {fast:>14,.0f}")
    print(f"  lookups/s, pgeocode + haversine    : {slow:>14,.0f}")
    print(f"  speed-up                           : {fast / slow:>14,.0f}x   (goal >= 1000x)")
    for name, runs in (("PostgreSQL", pg_rebuilds), ("SQLite", sqlite_rebuilds)):
        print(
            f"  rebuild, {name:<10} median / best : {statistics.median(runs):.3f} s / "
            f"{min(runs):.3f} s   (goal < 1 s)"
        )
    print(f"  web process RSS, tables loaded     : {web_rss:>8.1f} MB   (goal < 100 MB)")
    print(
        f"  bare Python + Flask RSS (baseline) : {base_rss:>8.1f} MB   "
        f"(leadsvc adds {web_rss - base_rss:.1f} MB)"
    )


if __name__ == "__main__":
    main()
