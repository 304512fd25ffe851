"""What the fault scripts run leadsvc on: one start-up sequence and one tear-down, shared.

`FaultStack` starts, all on loopback: an SMTP sink (aiosmtpd, `counting.Sink`) on `SMTP_PORT`, a
webhook receiver (`counting.Hooks`) that every demo dealer's `webhook_url` points at, a scratch
database on the PostgreSQL server of `postgres` (an admin URL; the database is dropped at the
end), a private Redis on 127.0.0.1:6390 (no persistence), then `leadsvc db upgrade`, the dealer
import, gunicorn (`config/gunicorn.conf.py`, `wsgi:app`), two `leadsvc worker` and a
`leadsvc relay --interval 2`. It refuses to start if one of its ports already answers
(another benchmark running): that process would answer in place of its own. `supervise()`
starts again any worker or relay that exited (as a process manager would) and counts it in
`restarts`. Leaving the `with` block stops everything it started, even after an error or
Ctrl-C; a step that fails to stop is reported on stderr and the others still run.
"""

from __future__ import annotations

import collections
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import requests
import sqlalchemy as sa
from counting import OPEN_ROWS, SMTP_PORT, Hooks, Sink
from e2e_latency import RECEIVER_PORT, dealers_with_webhooks
from signup_throughput import (
    REDIS_PORT,
    ROOT,
    WEB_PORT,
    drop_postgres,
    gunicorn,
    scratch_postgres,
    service_env,
    start_redis,
    stop,
)

#: The rq side: two workers and a relay, as the Procfile's process types.
COMMANDS = {
    "worker-1": ["worker"],
    "worker-2": ["worker"],
    "relay": ["relay", "--interval", "2"],
}
OUTBOX_ROWS = sa.text(
    "SELECT kind, status, count(*) FROM outbox GROUP BY kind, status ORDER BY kind, status"
)


PACED_ZIPS = ["10001", "60601", "94103", "30303", "77002", "98101"]


@dataclass
class PacedLoad:
    """What `FaultStack.paced_signups` sent: counts, accepted addresses, other replies."""

    tag: str
    sent: int = 0
    accepted: list[str] = field(default_factory=list)
    refused: collections.Counter = field(default_factory=collections.Counter)


class FaultStack:
    def __init__(self, postgres: str, env: dict[str, str] | None = None):
        self.postgres = postgres
        self.extra_env = env or {}
        self.sink = Sink()
        self.hooks: Hooks | None = None
        self.controller = None
        self.redis: subprocess.Popen | None = None
        self.web: subprocess.Popen | None = None
        self.processes: dict[str, subprocess.Popen] = {}
        self.restarts: collections.Counter[str] = collections.Counter()
        self.pg_url: str | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None

    # -- start ---------------------------------------------------------------------------------

    def __enter__(self) -> FaultStack:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        from aiosmtpd.controller import Controller

        # Another benchmark on these fixed ports would answer in place of ours: refuse to start.
        for port in (WEB_PORT, REDIS_PORT, SMTP_PORT, RECEIVER_PORT):
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    raise RuntimeError(f"127.0.0.1:{port} is in use (another benchmark running?)")
        self._tmp = tempfile.TemporaryDirectory(prefix="leadsvc-fault-")
        self.tmp_path = Path(self._tmp.name)
        self.log = self.tmp_path / "processes.log"
        self.web_log = self.tmp_path / "web.log"
        self.controller = Controller(self.sink, hostname="127.0.0.1", port=SMTP_PORT)
        self.controller.start()
        self.hooks = Hooks()
        threading.Thread(target=self.hooks.serve_forever, daemon=True).start()
        self.pg_url = scratch_postgres(self.postgres)
        self.start_redis()
        self.env = service_env(
            self.pg_url,
            self.tmp_path,
            {
                "SMTP_URL": f"smtp://127.0.0.1:{SMTP_PORT}",
                "JOB_RETRY_INTERVALS": ",".join(["2"] * 10),
                **self.extra_env,
            },
        )
        dealers = self.tmp_path / "dealers.csv"
        dealers.write_text(dealers_with_webhooks(f"http://127.0.0.1:{RECEIVER_PORT}"))
        for command in (["db", "upgrade"], ["dealers", "import", str(dealers)]):
            subprocess.run(
                ["leadsvc", *command],
                cwd=ROOT,
                env=self.env,
                check=True,
                stdout=subprocess.DEVNULL,
                timeout=600,
            )
        self.web = gunicorn("wsgi:app", ROOT / "config/gunicorn.conf.py", self.env, self.web_log)
        self.supervise()
        time.sleep(3)

    def start_redis(self) -> None:
        if self.redis is None:
            self.redis = start_redis(REDIS_PORT, self.tmp_path)

    def stop_redis(self) -> None:
        if self.redis is not None:
            self.redis.terminate()
            self.redis.wait(timeout=10)
            self.redis = None

    def supervise(self) -> None:
        """Start any worker or relay that is not running; one that exited counts as a restart."""
        for name, command in COMMANDS.items():
            process = self.processes.get(name)
            if process is None or process.poll() is not None:
                if process is not None:
                    self.restarts[name] += 1
                self.processes[name] = subprocess.Popen(
                    ["leadsvc", *command],
                    cwd=ROOT,
                    env=self.env,
                    stdout=self.log.open("ab"),
                    stderr=subprocess.STDOUT,
                )

    # -- after the load ------------------------------------------------------------------------

    def paced_signups(self, rate: float, seconds: float, tick=None) -> PacedLoad:
        """POST `rate` signups a second for `seconds` (distinct `r-<tag>-<n>` addresses, real
        ZIPs), calling `tick(now)` before each one and restarting dead processes after it."""
        load = PacedLoad(uuid.uuid4().hex[:6])
        started = time.time()
        with requests.Session() as http:
            while time.time() - started < seconds:
                if tick is not None:
                    tick(time.time())
                address = f"r-{load.tag}-{load.sent}@example.com"
                try:
                    reply = http.post(
                        f"http://127.0.0.1:{WEB_PORT}/api/v1/signups",
                        json={
                            "first_name": "Fault",
                            "last_name": "Test",
                            "email": address,
                            "zip": PACED_ZIPS[load.sent % len(PACED_ZIPS)],
                        },
                        timeout=10,
                    )
                    status = reply.status_code
                except requests.RequestException:
                    status = 0
                if status == 202:
                    load.accepted.append(address)
                else:
                    load.refused[status] += 1
                load.sent += 1
                self.supervise()
                time.sleep(max(0.0, started + load.sent / rate - time.time()))
        return load

    def settle(self, timeout: float = 240, late: float = 5) -> bool:
        """Wait (supervising) until no outbox row is open, at most `timeout` s, then `late` s
        more for late duplicates; True if nothing was left open. Redis is started if stopped."""
        self.start_redis()
        engine = sa.create_engine(self.pg_url)
        settled = False
        try:
            deadline = time.time() + timeout
            while time.time() < deadline:
                self.supervise()
                try:
                    with engine.begin() as connection:
                        if not connection.scalar(OPEN_ROWS):
                            settled = True
                            break
                except sa.exc.OperationalError:
                    pass  # the database may still be coming back
                time.sleep(1)
        finally:
            engine.dispose()
        time.sleep(late)
        return settled

    def query(self, statement, params: dict | None = None) -> list[sa.Row]:
        engine = sa.create_engine(self.pg_url)
        try:
            with engine.begin() as connection:
                return connection.execute(statement, params or {}).all()
        finally:
            engine.dispose()

    def open_rows(self) -> list[str]:
        """One line per outbox row still open: its status, job, and that job's state in rq."""
        import redis
        from rq.job import Job
        from rq.serializers import JSONSerializer

        rows = self.query(
            sa.text(
                "SELECT id, kind, status, job_id, attempts, updated_at FROM outbox "
                "WHERE status IN ('pending', 'queued', 'sending') ORDER BY id"
            )
        )
        connection = redis.Redis(port=REDIS_PORT)
        lines = []
        for row in rows:
            job = Job.fetch_many([row.job_id], connection=connection, serializer=JSONSerializer)[0]
            state = "no job in rq"
            if job is not None:
                state = (
                    f"rq {job.get_status()} position {job.get_position()} started "
                    f"{job.started_at} ended {job.ended_at} timeout {job.timeout}"
                )
            lines.append(
                f"{row.id} {row.kind} {row.status} attempts {row.attempts} "
                f"updated {row.updated_at} job {row.job_id}: {state}"
            )
        return lines

    def outbox_rows(self) -> list[sa.Row]:
        """(kind, status, count) of every outbox row."""
        return self.query(OUTBOX_ROWS)

    def keep_logs(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for log in (self.log, self.web_log):
            if log.exists():
                shutil.copy(log, directory / log.name)

    # -- tear-down -----------------------------------------------------------------------------

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        steps = [(name, lambda p=p: stop(p)) for name, p in self.processes.items()]
        if self.web is not None:
            steps.append(("gunicorn", lambda: stop(self.web)))
        steps.append(("redis", self.stop_redis))
        if self.pg_url is not None:
            steps.append(("scratch database", lambda: drop_postgres(self.postgres, self.pg_url)))
        if self.controller is not None:
            steps.append(("SMTP sink", self.controller.stop))
        if self.hooks is not None:
            hooks = self.hooks
            steps.append(("webhook receiver", lambda: (hooks.shutdown(), hooks.server_close())))
        if self._tmp is not None:
            steps.append(("temporary directory", self._tmp.cleanup))
        for name, step in steps:
            try:
                step()
            except Exception as error:  # keep tearing down the rest
                print(f"tear-down: {name}: {type(error).__name__}: {error}", file=sys.stderr)
        self.processes.clear()
        self.web = self.controller = self.hooks = self._tmp = self.pg_url = None
