"""Signup throughput: `POST /api/v1/signups` under gunicorn against a bare INSERT endpoint.

Run from the repository root with the dev extra installed and wrk on the PATH:

    python bench/signup_throughput.py [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test]
                                      [--rounds 4] [--seconds 10] [--connections 8]

It creates a scratch database on that PostgreSQL (dropped at the end), runs `leadsvc db upgrade`
(migrations, ZIP directory) and `leadsvc dealers import config/dealers.demo.csv` on it, starts a
private Redis on 127.0.0.1:6390 (no persistence; stopped at the end), then starts, side by side
and with the same `config/gunicorn.conf.py`:

1. the baseline: `bench/baseline_app.py` on 127.0.0.1:8794, one endpoint doing a single
   `INSERT ... RETURNING id`;
2. leadsvc: `wsgi:app` on 127.0.0.1:8790 (rate limits off, REDIS_URL on the private Redis, no rq
   worker running).

Each gets a 5 s warm-up, then `--rounds` rounds of `--seconds` of load from wrk (a separate
process) with `--connections` connections on one server at a time, alternating (base, leadsvc,
leadsvc, base, ...), posting real signup bodies (distinct emails, ZIPs taken from the directory).
The machine's speed drifts by tens of percent over a minute; alternating short rounds puts both
sides under the same drift, where one long run of each compared two different minutes. It prints
requests/s and p50/p95/p99 latency of both per round, the per-round ratios and their medians
(goals: leadsvc >= 50% of baseline requests/s, leadsvc p99 <= 2x baseline p99) and each web
worker's RSS after the load (goal < 100 MB).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
from scratch import drop_postgres, scratch_postgres

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRET = "bench-secret-key-" + "x" * 32
REDIS_PORT = int(os.environ.get("BENCH_REDIS_PORT", "6390"))
WEB_PORT = int(os.environ.get("BENCH_WEB_PORT", "8790"))
BASE_PORT = int(os.environ.get("BENCH_BASELINE_PORT", "8794"))

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS bench_baseline (
    id bigserial PRIMARY KEY,
    email text NOT NULL,
    first_name text,
    last_name text,
    zip text,
    created_at timestamptz NOT NULL DEFAULT now()
)
"""

WRK_SCRIPT = r"""
local zips = {%(zips)s}
local counter = 0
local threads = {}
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  prefix = args[1]
end
request = function()
  counter = counter + 1
  local body = string.format(
    '{"first_name":"Bench","last_name":"Mark","email":"%%s-%%d-%%d@example.com","zip":"%%s"}',
    prefix, tid, counter, zips[(counter %% #zips) + 1])
  return wrk.format("POST", "/api/v1/signups", {["Content-Type"] = "application/json"}, body)
end
function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'RESULT {"requests":%%d,"duration_us":%%d,"non2xx":%%d,"socket_errors":%%d,' ..
    '"p50":%%d,"p95":%%d,"p99":%%d,"max":%%d}\n',
    summary.requests, summary.duration, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
"""


def service_env(pg_url: str, tmp_path: Path, extra: dict[str, str] | None = None) -> dict:
    """The environment of every leadsvc process a benchmark starts (web, worker, relay)."""
    return {
        **os.environ,
        "DATABASE_URL": pg_url,
        "REDIS_URL": f"redis://127.0.0.1:{REDIS_PORT}/0",
        "SECRET_KEY": SECRET,
        "RATE_LIMITS_ENABLED": "false",
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "HOST": "127.0.0.1",
        "PORT": str(WEB_PORT),
        "LOG_LEVEL": "WARNING",
        # The benchmarks' webhook receivers listen on loopback, which dealers may not name unless
        # an operator allows it.
        "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",
        **(extra or {}),
    }


def wait_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port}")


def start_redis(port: int, workdir: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port)
    return process


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return sorted(int(pid) for pid in children)


def gunicorn(
    app: str, config: Path, env: dict, log: Path, port: int = WEB_PORT
) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--config", str(config), app],
        cwd=ROOT,
        env={**env, "PORT": str(port)},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    wait_port(port)
    return process


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def tear_down(
    processes: list[subprocess.Popen], redis: subprocess.Popen, postgres: str, scratch_url: str
) -> None:
    """Stop what a benchmark started: its processes (last started first), its private Redis, and
    its scratch database on the server of `postgres`."""
    for process in reversed(processes):
        stop(process)
    redis.terminate()
    redis.wait(timeout=10)
    drop_postgres(postgres, scratch_url)


def wrk(script: Path, seconds: int, connections: int, prefix: str, port: int = WEB_PORT) -> dict:
    result = subprocess.run(
        [
            "wrk",
            "-t",
            "2",
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}",
            "--",
            prefix,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    for line in result.stdout.splitlines():
        if line.startswith("RESULT "):
            figures = json.loads(line.removeprefix("RESULT "))
            figures["rps"] = figures["requests"] / (figures["duration_us"] / 1e6)
            return figures
    raise RuntimeError(f"wrk gave no result:\n{result.stdout}\n{result.stderr}")


def warm(name: str, script: Path, args, port: int, log: Path) -> None:
    figures = wrk(script, 5, args.connections, f"warm-{name}-{uuid.uuid4().hex[:6]}", port)
    if figures["non2xx"] or figures["socket_errors"]:
        raise RuntimeError(f"{name}: errors during warm-up {figures}; see {log}")


def rounds_order(rounds: int) -> list[str]:
    """base, signup, signup, base, base, signup...: each side runs first as often as second, so
    a drift in the machine's speed during the run falls on both alike."""
    order = []
    for n in range(rounds):
        order += ["base", "signup"] if n % 2 == 0 else ["signup", "base"]
    return order


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--seconds", type=int, default=10, help="per round and side")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="leadsvc-bench-") as tmp:
        tmp_path = Path(tmp)
        log = tmp_path / "gunicorn.log"
        pg_url = scratch_postgres(args.postgres)
        redis = start_redis(REDIS_PORT, tmp_path)
        try:
            env = service_env(pg_url, tmp_path)
            env.pop("WEB_CONCURRENCY", None)
            demo = str(ROOT / "config/dealers.demo.csv")
            for command in (["db", "upgrade"], ["dealers", "import", demo]):
                subprocess.run(
                    ["leadsvc", *command],
                    cwd=ROOT,
                    env=env,
                    check=True,
                    stdout=subprocess.DEVNULL,
                    timeout=600,
                )
            engine = sa.create_engine(pg_url)
            with engine.begin() as connection:
                connection.execute(sa.text(CREATE_TABLE))
                zips = [z for (z,) in connection.execute(sa.text("SELECT zip5 FROM zip_codes"))]
                dealers = connection.scalar(sa.text("SELECT count(*) FROM dealers"))
            script = tmp_path / "signup.lua"
            sample = random.Random(8).sample(zips, 500)
            script.write_text(WRK_SCRIPT % {"zips": ",".join(f'"{z}"' for z in sample)})

            app_config = ROOT / "config/gunicorn.conf.py"
            # The same configuration; only the hooks that touch the app are the baseline's own:
            # post_fork drops the baseline's pool, and when_ready preloads nothing (leadsvc's
            # loads its routing table in the master).
            base_config = tmp_path / "baseline.conf.py"
            base_config.write_text(
                f"exec(open({str(app_config)!r}).read())\n\n"
                "def when_ready(server):\n"
                "    pass\n\n"
                "def post_fork(server, worker):\n"
                "    from bench import baseline_app\n"
                "    baseline_app.engine.dispose(close=False)\n"
            )
            # Both stay up for the whole run; only one is under load at a time.
            servers = {
                "base": gunicorn("bench.baseline_app:app", base_config, env, log, BASE_PORT),
                "signup": gunicorn("wsgi:app", app_config, env, log, WEB_PORT),
            }
            ports = {"base": BASE_PORT, "signup": WEB_PORT}
            results = {"base": [], "signup": []}
            try:
                for name in ("base", "signup"):
                    warm(name, script, args, ports[name], log)
                for name in rounds_order(args.rounds):
                    prefix = f"{name}-{uuid.uuid4().hex[:6]}"
                    figures = wrk(script, args.seconds, args.connections, prefix, ports[name])
                    results[name].append(figures)
                base_rss = [rss_mb(pid) for pid in worker_pids(servers["base"].pid)]
                app_rss = [rss_mb(pid) for pid in worker_pids(servers["signup"].pid)]
            finally:
                for process in servers.values():
                    stop(process)
            with engine.begin() as connection:
                leads = connection.scalar(sa.text("SELECT count(*) FROM leads"))
                routed = connection.scalar(
                    sa.text("SELECT count(*) FROM leads WHERE dealer_id IS NOT NULL")
                )
                outbox = connection.scalar(sa.text("SELECT count(*) FROM outbox"))
            engine.dispose()
        finally:
            redis.terminate()
            redis.wait(timeout=10)
            drop_postgres(args.postgres, pg_url)

    workers = len(app_rss)
    print(
        f"signup throughput ({args.connections} connections; {args.rounds} rounds of "
        f"{args.seconds} s per side, alternating, after a 5 s warm-up each; gunicorn {workers} "
        f"workers, {dealers} dealers)"
    )
    print(
        f"  {'round':<8}{'':<31}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'non-2xx':>9}"
    )
    rps_ratios, p99_ratios = [], []
    for n, (base, app) in enumerate(zip(results["base"], results["signup"], strict=True), 1):
        for label, r in (("baseline INSERT ... RETURNING", base), ("leadsvc POST /signups", app)):
            print(
                f"  {n:<8}{label:<31}{r['rps']:>9,.0f}{r['p50'] / 1000:>9.1f}"
                f"{r['p95'] / 1000:>9.1f}{r['p99'] / 1000:>9.1f}"
                f"{r['non2xx'] + r['socket_errors']:>9}"
            )
        rps_ratios.append(app["rps"] / base["rps"])
        p99_ratios.append(app["p99"] / base["p99"])
    print(
        "  req/s ratio leadsvc / baseline per round: "
        + ", ".join(f"{r:.2f}" for r in rps_ratios)
        + f"; median {median(rps_ratios):.2f}   (goal >= 0.50)"
    )
    print(
        "  p99 ratio leadsvc / baseline per round  : "
        + ", ".join(f"{r:.2f}" for r in p99_ratios)
        + f"; median {median(p99_ratios):.2f}   (goal <= 2.0)"
    )
    errors = sum(r["non2xx"] + r["socket_errors"] for side in results.values() for r in side)
    print(f"  errors (non-2xx or socket) in all rounds: {errors}")
    print(f"  leads stored {leads:,} ({routed:,} routed to a dealer), outbox rows {outbox:,}")
    print(
        "  web worker RSS after the load, MB : leadsvc "
        + ", ".join(f"{m:.1f}" for m in app_rss)
        + "   (goal < 100)"
        + "; baseline "
        + ", ".join(f"{m:.1f}" for m in base_rss)
    )


if __name__ == "__main__":
    main()
