"""End-to-end latency: from a signup's 202 to its dealer's webhook arriving.

Run from the repository root with the dev extra installed:

    python bench/e2e_latency.py [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test]
                                [--rate 100] [--seconds 30]

It creates a scratch database on that PostgreSQL (dropped at the end), runs `leadsvc db upgrade`
and imports the demo dealers with every dealer's `webhook_url` pointing at a local HTTP receiver
(a thread of this process that timestamps each arrival), starts a private Redis on
127.0.0.1:6390 (no persistence), gunicorn (`config/gunicorn.conf.py`, `wsgi:app`), two
`leadsvc worker` processes and one `leadsvc relay`, all on loopback, with emails written as
`.eml` files (no SMTP_URL). A separate process sends `--rate` signups per second (open loop,
distinct emails, ZIPs from the directory) for `--seconds`, noting when each 202 arrived; the
benchmark then waits (at most 120 s) for the webhooks, and prints p50/p95/p99 of
(webhook received - 202 received) (goal: p95 < 1 s), how many arrived, duplicates, and the RSS
of the worker processes. Everything it started is stopped at the end.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from signup_throughput import (  # noqa: E402
    REDIS_PORT,
    WEB_PORT,
    gunicorn,
    rss_mb,
    scratch_postgres,
    service_env,
    start_redis,
    tear_down,
)

RECEIVER_PORT = int(os.environ.get("BENCH_RECEIVER_PORT", "8791"))


class Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int):
        super().__init__(("127.0.0.1", port), Hook)
        self.arrivals: dict[str, float] = {}
        self.hits = 0
        self.lock = threading.Lock()


class Hook(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        at = time.time()
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        email = _find_email(json.loads(body))
        with self.server.lock:
            self.server.hits += 1
            self.server.arrivals.setdefault(email, at)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def _find_email(value) -> str | None:
    if isinstance(value, str):
        return value if value.endswith("@example.com") else None
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for item in items:
        found = _find_email(item)
        if found:
            return found
    return None


def dealers_with_webhooks(url: str) -> str:
    lines = [
        line
        for line in (ROOT / "config/dealers.demo.csv").read_text().splitlines()
        if not line.startswith("#")
    ]
    rows = list(csv.DictReader(lines))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        row["webhook_url"] = f"{url}/hook/{row['code']}"
        row["webhook_secret"] = "bench-webhook-secret-0123456789"
        writer.writerow(row)
    return out.getvalue()


def send(rate: int, seconds: int, zips: list[str], prefix: str) -> None:
    """The load generator (a process of its own): prints one JSON line per accepted signup."""
    import requests

    local = threading.local()
    total = rate * seconds
    started = time.time() + 0.5
    url = f"http://127.0.0.1:{WEB_PORT}/api/v1/signups"

    def one(n: int):
        time.sleep(max(0.0, started + n / rate - time.time()))
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        email = f"{prefix}-{n}@example.com"
        try:
            reply = session.post(
                url,
                json={
                    "first_name": "Bench",
                    "last_name": "Mark",
                    "email": email,
                    "zip": zips[n % len(zips)],
                },
                timeout=10,
            )
            return email, reply.status_code, time.time()
        except requests.RequestException:
            return email, 0, time.time()

    with ThreadPoolExecutor(max_workers=32) as pool:
        for email, status, at in pool.map(one, range(total)):
            print(json.dumps({"email": email, "status": status, "at": at}), flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--rate", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--send", nargs=2, help=argparse.SUPPRESS)  # internal: the generator
    args = parser.parse_args()
    if args.send:
        send(args.rate, args.seconds, args.send[1].split(","), args.send[0])
        return

    receiver = Receiver(RECEIVER_PORT)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    processes: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="leadsvc-e2e-") as tmp:
        tmp_path = Path(tmp)
        log = tmp_path / "processes.log"
        pg_url = scratch_postgres(args.postgres)
        redis = start_redis(REDIS_PORT, tmp_path)
        try:
            env = service_env(pg_url, tmp_path)
            env.pop("SMTP_URL", None)
            dealers = tmp_path / "dealers.csv"
            dealers.write_text(dealers_with_webhooks(f"http://127.0.0.1:{RECEIVER_PORT}"))
            for command in (["db", "upgrade"], ["dealers", "import", str(dealers)]):
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
                zips = [
                    z
                    for (z,) in connection.execute(
                        sa.text("SELECT zip5 FROM zip_routes WHERE dealer_id IS NOT NULL")
                    )
                ]
            sample = random.Random(9).sample(zips, 300)

            processes.append(gunicorn("wsgi:app", ROOT / "config/gunicorn.conf.py", env, log))
            for command in (["worker"], ["worker"], ["relay"]):
                processes.append(
                    subprocess.Popen(
                        ["leadsvc", *command],
                        cwd=ROOT,
                        env=env,
                        stdout=log.open("ab"),
                        stderr=subprocess.STDOUT,
                    )
                )
            time.sleep(3)
            prefix = f"e2e-{uuid.uuid4().hex[:6]}"
            sender = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--rate",
                    str(args.rate),
                    "--seconds",
                    str(args.seconds),
                    "--send",
                    prefix,
                    ",".join(sample),
                ],
                capture_output=True,
                text=True,
                timeout=args.seconds + 120,
            )
            sent = [json.loads(line) for line in sender.stdout.splitlines()]
            accepted = {r["email"]: r["at"] for r in sent if r["status"] == 202}
            deadline = time.time() + 120
            while time.time() < deadline:
                with receiver.lock:
                    if len(receiver.arrivals.keys() & accepted.keys()) >= len(accepted):
                        break
                time.sleep(0.5)
            time.sleep(2)  # late duplicates, if any
            worker_rss = [rss_mb(p.pid) for p in processes[1:3]]
            with engine.begin() as connection:
                by_status = dict(
                    connection.execute(
                        sa.text("SELECT status, count(*) FROM outbox GROUP BY status")
                    ).all()
                )
            engine.dispose()
        finally:
            tear_down(processes, redis, args.postgres, pg_url)
            receiver.shutdown()

    with receiver.lock:
        delays = [receiver.arrivals[e] - at for e, at in accepted.items() if e in receiver.arrivals]
        hits = receiver.hits
    print(
        f"end-to-end latency, 202 -> dealer webhook ({args.rate} signups/s for "
        f"{args.seconds} s; gunicorn + 2 rq workers + relay, private Redis)"
    )
    print(
        f"  signups sent {len(sent):,}, accepted (202) {len(accepted):,}, "
        f"webhooks received {len(delays):,}, duplicate webhook hits {hits - len(delays):,}"
    )
    if delays:
        print(
            f"  p50 / p95 / p99 / max : {percentile(delays, 50):.3f} / "
            f"{percentile(delays, 95):.3f} / {percentile(delays, 99):.3f} / "
            f"{max(delays):.3f} s   (goal p95 < 1 s)"
        )
    print(f"  outbox rows by status : {by_status}")
    print("  rq worker RSS, MB     : " + ", ".join(f"{m:.1f}" for m in worker_rss))


if __name__ == "__main__":
    main()
