"""Helpers for the outbound and jobs tests: settings, dealers, the outbox, worker processes."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
from lxml import etree

from leadsvc.dealers.adf import ADF_DTD
from leadsvc.dealers.directory import import_dealers
from leadsvc.dealers.models import Dealer
from leadsvc.jobs.drainer import OutboxDrainer
from leadsvc.outbox.models import OutboxAttempt, OutboxMessage
from tests.conftest import TEST_SECRET_KEY
from tests.factories import TEST_WEBHOOK_NETWORKS, dealer_csv, dealer_line
from tests.servers import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
LEADSVC = shutil.which("leadsvc") or str(Path(sys.executable).parent / "leadsvc")
PUBLIC_BASE_URL = "https://stay.example.com"
WEBHOOK_SECRET = "dealer-webhook-secret-0123456789"
#: Short timeouts and retry intervals so failures and retries happen within a test.
FAST = {
    "public_base_url": PUBLIC_BASE_URL,
    "job_timeout": 3,
    "smtp_timeout": 2.0,
    "webhook_timeout": 1.0,
    "job_retry_intervals": (1, 1),
}
FAST_ENV = {
    "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
    "JOB_TIMEOUT": "3",
    "SMTP_TIMEOUT": "2",
    "WEBHOOK_TIMEOUT": "1",
    "JOB_RETRY_INTERVALS": "1,1",
    "LOG_LEVEL": "INFO",
    "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",
}
SETTING_NAMES = {
    "DATABASE_URL",
    "SECRET_KEY",
    "INSTANCE_PATH",
    "REDIS_URL",
    "SMTP_URL",
    "PUBLIC_BASE_URL",
    "DOUBLE_OPT_IN",
    "JOB_TIMEOUT",
    "SMTP_TIMEOUT",
    "WEBHOOK_TIMEOUT",
    "JOB_RETRY_INTERVALS",
    "WEBHOOK_ALLOWED_NETWORKS",
}


def add_dealer(session, *, code="NY1", zip5="10019", webhook_url: str | None = None) -> Dealer:
    """One active dealer (routing table rebuilt); with a webhook when `webhook_url` is given."""
    line = dealer_line(
        code,
        zip5,
        webhook_url=webhook_url or "",
        webhook_secret=WEBHOOK_SECRET if webhook_url else "",
    )
    report = import_dealers(session, dealer_csv(line), webhook_networks=TEST_WEBHOOK_NETWORKS)
    assert report.applied, report.rejected
    return session.scalars(sa.select(Dealer).where(Dealer.code == code)).one()


def outbox(session) -> list[OutboxMessage]:
    session.rollback()  # see what other sessions committed
    return list(session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.id)))


def kinds_and_statuses(session) -> list[tuple[str, str]]:
    return [(row.kind, row.status) for row in outbox(session)]


def attempts(session, outbox_id: int) -> list[tuple[int | None, str]]:
    session.rollback()
    return [
        (attempt.number, attempt.outcome)
        for attempt in session.scalars(
            sa.select(OutboxAttempt)
            .where(OutboxAttempt.outbox_id == outbox_id)
            .order_by(OutboxAttempt.id)
        )
    ]


def drain(app) -> int:
    """Deliver every due outbox row in this thread, as the in-process drainer does."""
    return OutboxDrainer(app).drain_once()


def parts(message) -> dict[str, str]:
    """The text of each part of an email, by content type."""
    return {
        part.get_content_type(): part.get_content()
        for part in message.walk()
        if not part.is_multipart()
    }


def validate_adf(text: str) -> etree._Element:
    """Parse ADF XML and validate it against the ADF 1.0 DTD; returns the root element."""
    assert ADF_DTD.is_file(), f"the ADF DTD is missing at {ADF_DTD}"
    root = etree.fromstring(text.encode("utf-8"))
    dtd = etree.DTD(str(ADF_DTD))
    assert dtd.validate(root), dtd.error_log.filter_from_errors()
    return root


def verify_signature(request: dict, secret: str = WEBHOOK_SECRET) -> bool:
    """What a dealer's receiver does: recompute the HMAC over "<timestamp>.<body>"."""
    headers = {key.lower(): value for key, value in request["headers"].items()}
    signed = headers["x-leadsvc-timestamp"].encode() + b"." + request["body"]
    expected = "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers["x-leadsvc-signature"])


def worker_env(database_url: str, tmp_path: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SETTING_NAMES}
    env.update(
        DATABASE_URL=database_url,
        SECRET_KEY=TEST_SECRET_KEY,
        INSTANCE_PATH=str(tmp_path / "worker-instance"),
        **FAST_ENV,
    )
    env.update(settings)
    return env


def start_worker(env: dict[str, str], log_path: Path, *command: str) -> subprocess.Popen:
    """`leadsvc worker` (or another `leadsvc` command) as the Procfile runs it, logging to
    `log_path`."""
    log = open(log_path, "ab")  # noqa: SIM115  (closed with the process, in stop_worker)
    process = subprocess.Popen(
        [LEADSVC, *(command or ["worker"])],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    process.log_file = log
    return process


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (the rq work horse and scheduler), from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(stat.parent.name))
    tree, stack = [], [pid]
    while stack:
        current = stack.pop()
        tree.append(current)
        stack.extend(children.get(current, []))
    return tree


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL the worker and every process it started, as when its machine dies."""
    for pid in process_tree(process.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait(timeout=10)


def stop_worker(process: subprocess.Popen) -> None:
    if process.poll() is None:
        tree = process_tree(process.pid)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
    process.log_file.close()


class PrivateRedis:
    """A Redis server of one test's own on a free port (no persistence), which the test may stop
    and start again without touching the machine's Redis that other tests use."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def answers(self) -> bool:
        result = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), "ping"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        return result.stdout.strip() == "PONG"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
        )
        wait_until(self.answers, 10, "the test's Redis to answer")

    def stop(self) -> None:
        """Stop it as an outage would (it keeps nothing on disk: everything in it is lost)."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


def invoke(app, *args: str):
    """Run a `leadsvc` command on `app` (its own app context, whatever a fixture pushed)."""
    with app.app_context():
        return app.test_cli_runner().invoke(args=list(args))
