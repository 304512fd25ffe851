"""What tests/ops/test_load_balancer.py runs and measures: the processes of one deployment
behind HAProxy, the signup load, the wait for the outbox to drain, and what the database holds
afterwards."""

from __future__ import annotations

import collections
import concurrent.futures
import csv
import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from tests.conftest import TEST_SECRET_KEY, free_port, wait_until
from tests.jobs.support import LEADSVC, kill_tree, start_worker, stop_worker

ROOT = Path(__file__).resolve().parents[2]
HAPROXY = "/usr/sbin/haproxy"
#: A burst of 5,000 signups (15,000 outbox rows: 5-8 minutes on a shared two-core machine, so the
#: test is marked slow and runs in CI's second pass); LOAD_BALANCER_SIGNUPS sends another number.
SIGNUPS = int(os.environ.get("LOAD_BALANCER_SIGNUPS", "5000"))
CLIENTS = 16
#: Signups sent before each kill: a web process, then a worker, then a relay.
KILL_AT = {"web": SIGNUPS // 4, "worker": SIGNUPS * 3 // 8, "relay": SIGNUPS // 2}
#: The drain may take this long at most: the rows of the batch the killed worker held wait for
#: the relay's sweep (about JOB_TIMEOUT x 20 + 30 s after the job started), the rest for the
#: workers (two of them deliver roughly 50-65 rows/s on a busy 2-core machine).
DRAIN_SECONDS = 120 + SIGNUPS * 3 // 50
WEBHOOK_SECRET = "lb-webhook-secret-0123456789abcdef"
PREFIX = "lb-"
ENV = {
    "SECRET_KEY": TEST_SECRET_KEY,
    "PUBLIC_BASE_URL": "https://stay.example.com",
    "RATE_LIMITS_ENABLED": "false",
    "MIN_FILL_SECONDS": "0",
    "PROXY_COUNT": "1",
    "JOB_TIMEOUT": "3",
    "SMTP_TIMEOUT": "2",
    "WEBHOOK_TIMEOUT": "2",
    "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",  # the webhook receiver listens on loopback
    "JOB_RETRY_INTERVALS": "1,1,2,2,5",
    "LOG_LEVEL": "WARNING",
    "WEB_CONCURRENCY": "1",
    "WEB_THREADS": "4",
    "HOST": "127.0.0.1",
}
MESSAGE_ID = re.compile(rb"^Message-ID:\s*<outbox-(\d+)\.", re.IGNORECASE | re.MULTILINE)


def dealers_with_webhooks(url: str) -> tuple[str, list[str]]:
    """The demo dealer directory, every dealer's webhook pointing at `url`; and their ZIPs."""
    lines = (ROOT / "config/dealers.demo.csv").read_text().splitlines()
    rows = list(csv.DictReader(line for line in lines if not line.startswith("#")))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            row | {"webhook_url": f"{url}/{row['code']}", "webhook_secret": WEBHOOK_SECRET}
        )
    return out.getvalue(), [row["zip"] for row in rows]


class Cluster:
    """The processes of one deployment, each logging to a file under `logs`."""

    def __init__(self, env: dict[str, str], logs: Path):
        self.env, self.logs = env, logs
        self.web: dict[str, subprocess.Popen] = {}
        self.ports: dict[str, int] = {}
        self.jobs: dict[str, subprocess.Popen] = {}
        self.haproxy: subprocess.Popen | None = None
        self.lb_port = free_port()

    def start(self) -> None:
        for name in ("web1", "web2", "web3"):
            self.ports[name] = free_port()
            self.web[name] = self._popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "--config",
                    "config/gunicorn.conf.py",
                    "wsgi:app",
                ],
                name,
                PORT=str(self.ports[name]),
            )
        for name in ("worker-1", "worker-2", "relay-1", "relay-2"):
            self.start_job_process(name)
        addresses = {f"LEADSVC_{n.upper()}": f"127.0.0.1:{p}" for n, p in self.ports.items()}
        self.haproxy = self._popen(
            [HAPROXY, "-db", "-f", str(ROOT / "config/haproxy.cfg")],
            "haproxy",
            LEADSVC_LB_BIND=f"127.0.0.1:{self.lb_port}",
            **addresses,
        )
        for name, port in self.ports.items():
            wait_until(lambda p=port: ready(f"http://127.0.0.1:{p}"), 90, f"{name} to be ready")
        wait_until(lambda: ready(self.url), 30, "HAProxy to answer")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.lb_port}"

    def _popen(self, command: list[str], name: str, **env: str) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115  (closed in stop)
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=self.env | env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        process.log_file = log
        return process

    def start_job_process(self, name: str) -> None:
        command = ["worker"] if name.startswith("worker") else ["relay", "--interval", "2"]
        self.jobs[name] = start_worker(self.env, self.logs / f"{name}.log", *command)

    def kill_web(self, name: str) -> None:
        """SIGKILL a gunicorn master and its worker (they share a process group)."""
        os.killpg(self.web[name].pid, signal.SIGKILL)
        self.web[name].wait(timeout=10)

    def kill_and_restart(self, name: str) -> None:
        kill_tree(self.jobs[name])
        self.jobs[name].log_file.close()
        self.start_job_process(name)

    def stop(self) -> None:
        for process in [*self.web.values(), self.haproxy]:
            if process is None:
                continue
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=10)
            process.log_file.close()
        for process in self.jobs.values():
            stop_worker(process)


def ready(url: str) -> bool:
    try:
        return requests.get(f"{url}/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def send_signups(url: str, zips: list[str], on_sent) -> dict[int, int]:
    """POST `SIGNUPS` signups from `CLIENTS` threads (each its own keep-alive connection);
    returns the status of each (0: no reply). `on_sent(count)` is called after each."""
    sent = iter(range(SIGNUPS))
    lock = threading.Lock()
    statuses: dict[int, int] = {}

    def client() -> None:
        http = requests.Session()
        while True:
            with lock:
                n = next(sent, None)
            if n is None:
                return
            body = {
                "first_name": "Load",
                "last_name": "Balanced",
                "email": f"{PREFIX}{n}@example.com",
                "zip": zips[n % len(zips)],
            }
            try:
                status = http.post(f"{url}/api/v1/signups", json=body, timeout=30).status_code
            except requests.RequestException:
                status = 0
                http = requests.Session()
            with lock:
                statuses[n] = status
                count = len(statuses)
            on_sent(count)

    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        for future in [pool.submit(client) for _ in range(CLIENTS)]:
            future.result()
    return statuses


def query(engine: sa.Engine, sql: str) -> list[sa.Row]:
    with engine.connect() as connection:
        return connection.execute(sa.text(sql)).all()


def open_rows(engine: sa.Engine) -> int:
    return query(
        engine,
        "SELECT count(*) FROM outbox WHERE status IN ('pending', 'queued', 'sending', "
        "'handed_off')",
    )[0][0]


def wait_for_drain(engine: sa.Engine, cluster: Cluster) -> float:
    """Seconds until no outbox row is open (printing the counts every 10 s); fails with the
    open rows after `DRAIN_SECONDS`."""
    started = next_report = time.monotonic()
    while open_rows(engine):
        now = time.monotonic()
        if now - started > DRAIN_SECONDS:
            stuck = query(
                engine,
                "SELECT id, kind, status, attempts, generation, job_id, updated_at FROM outbox "
                "WHERE status IN ('pending', 'queued', 'sending', 'handed_off') ORDER BY id",
            )
            pytest.fail(
                f"{len(stuck)} outbox rows still open {DRAIN_SECONDS} s after the load "
                f"(logs in {cluster.logs}): {[tuple(row) for row in stuck[:40]]}"
            )
        if now >= next_report:
            counts = query(engine, "SELECT kind, status, count(*) FROM outbox GROUP BY 1, 2")
            print(f"drain {now - started:.0f} s: {sorted(tuple(row) for row in counts)}")
            next_report += 10
        time.sleep(0.5)
    return time.monotonic() - started


class Report:
    """What the database holds after the run."""

    def __init__(self, engine: sa.Engine):
        rows = query(engine, "SELECT id, kind, status, attempts, generation FROM outbox")
        self.rows = len(rows)
        self.by_status = collections.Counter((kind, status) for _, kind, status, _, _ in rows)
        self.sent = sum(1 for row in rows if row.status == "sent")
        self.unknown = sorted(row.id for row in rows if row.status == "unknown")
        self.email_ids = {
            row.id for row in rows if row.kind.endswith("_email") and row.status == "sent"
        }
        self.webhook_ids = {row.id for row in rows if row.kind == "dealer_webhook"}
        self.attempts = {row.id: row.attempts for row in rows}
        self.regenerated = sorted(row.id for row in rows if row.generation > 1)
        #: Every attempt of a row that has a `duplicate` one (a job that met it settled or in
        #: flight): (row, try, runner, outcome, error, started).
        self.duplicate_attempts = [
            tuple(row)
            for row in query(
                engine,
                "SELECT outbox_id, number, runner, outcome, error, started_at FROM outbox_attempts"
                " WHERE outbox_id IN (SELECT outbox_id FROM outbox_attempts"
                " WHERE outcome = 'duplicate') ORDER BY outbox_id, id",
            )
        ]
        self.span = query(engine, "SELECT min(sent_at), max(sent_at) FROM outbox")[0]
        self.leads = query(
            engine,
            "SELECT l.email, (SELECT count(*) FROM consent_events e WHERE e.lead_id = l.id "
            "AND e.event_type = 'given'), (SELECT count(*) FROM outbox o WHERE o.lead_id = l.id) "
            "FROM leads l",
        )

    def stored(self) -> dict[str, tuple[int, int]]:
        """Each stored address: (its `given` consent events, its outbox rows)."""
        return {email: (events, rows) for email, events, rows in self.leads}

    def delivering_seconds(self) -> float:
        """From the first delivery to the last."""
        return (self.span[1] - self.span[0]).total_seconds()


def consent_verify(env: dict[str, str]) -> str:
    result = subprocess.run(
        [LEADSVC, "consent", "verify"], env=env, capture_output=True, text=True, timeout=120
    )
    return result.stdout + result.stderr
