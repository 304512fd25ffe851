"""Fault: a private PostgreSQL cluster stopped for 10 s, then started, during a signup load.

Run from the repository root with the dev extra installed (as root it runs the cluster as the
`postgres` user, since initdb refuses root):

    python bench/faults/pg_restart.py [--port 5440] [--rate 5] [--senders 8] [--seconds 60]
                                      [--at 20] [--outage 10] [--pg-bin DIR] [--keep-logs DIR]

It never touches the shared PostgreSQL: it creates a throw-away cluster with initdb in a
temporary directory (trust auth, fsync off) listening on 127.0.0.1:`--port` only, and runs the
usual fault stack against a scratch database there (`stack.FaultStack`: a private Redis, an SMTP
sink, a webhook receiver for every demo dealer, gunicorn with `config/gunicorn.conf.py`, two
`leadsvc worker`, `leadsvc relay --interval 2`). `--senders` threads send `--rate` signups per
second between them (open loop, one distinct address each) for `--seconds`; at second `--at` the
cluster is stopped (`pg_ctl stop -m fast`: sessions are cut, transactions in flight abort),
`--outage` seconds later started again (`pg_ctl start -w`). Nothing else is restarted; a worker
or relay that exits is started again and counted. After the load it waits until no outbox row
is open (at most 240 s) and prints:

- the replies by status before the stop, during the outage and after PostgreSQL was back;
- whether each 503 carried the form's failure message, and any 500, trace or transport error;
- the signups sent in the last 20 s and how many were accepted (recovery without a restart);
- per address: an accepted signup must have exactly one lead, one `given` consent event and its
  three outbox rows (welcome email, ADF email, webhook); a refused one none of them. A refused
  signup stored in full (its commit reached PostgreSQL but the reply did not) is counted apart;
  anything in between is a partial write;
- welcome and ADF emails at the sink, webhook hits, duplicates; worker/relay restarts, gunicorn
  workers replaced, and the web log's "database unavailable" / "unexpected failure" lines;

then PASS or FAIL. Everything it started (the cluster and its directory included) is removed
at the end, also after an error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import requests
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from counting import count_deliveries  # noqa: E402
from signup_throughput import WEB_PORT, worker_pids  # noqa: E402
from stack import FaultStack  # noqa: E402

#: The form's own failure text (the "Stay In the Loop" form, seeds/000_2a84f6c4489d11bf.txt).
FORM_FAILURE = "Sorry about this. Something went wrong, please come back and try again later."
#: Text that would mean a reply leaked internals.
TRACE_MARKERS = ("traceback", 'file "', "psycopg", "sqlalchemy", "operationalerror", "sqlstate")
ZIPS = ["10001", "60601", "94103", "30303", "77002", "98101"]
#: The outbox rows one signup writes for these ZIPs (every demo dealer has email and webhook).
KINDS = {"welcome_email": 1, "dealer_email": 1, "dealer_webhook": 1}
PREFIX = "pg-"


def default_pg_bin() -> Path:
    """The newest Debian-packaged PostgreSQL's programs."""
    versions = [p.name for p in Path("/usr/lib/postgresql").glob("*") if p.name.isdigit()]
    newest = max(versions, key=int, default="15")
    return Path(f"/usr/lib/postgresql/{newest}/bin")


class PrivateCluster:
    """A PostgreSQL cluster of this run only: initdb in a temporary directory, 127.0.0.1:port."""

    def __init__(self, port: int, bin_dir: Path, user: str = "postgres"):
        self.port = port
        self.bin_dir = bin_dir
        # initdb and postgres refuse to run as root: run them as `user` then.
        self.user = user if os.geteuid() == 0 else None
        self.dir: Path | None = None
        self.running = False

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, *args: str, timeout: float = 120) -> None:
        command = [str(self.bin_dir / program), *args]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if result.returncode:
            raise RuntimeError(
                f"{program} {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}"
            )

    def __enter__(self) -> PrivateCluster:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                raise RuntimeError(f"127.0.0.1:{self.port} is taken; choose another --port")
        self.dir = Path(tempfile.mkdtemp(prefix="leadsvc-pg-"))
        try:
            if self.user:
                entry = pwd.getpwnam(self.user)
                os.chown(self.dir, entry.pw_uid, entry.pw_gid)
            self._run(
                "initdb",
                "-D",
                str(self.dir / "data"),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale",
                "C",
            )
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.dir} -c fsync=off"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.dir / "data"),
            "-l",
            str(self.dir / "server.log"),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )
        self.running = True

    def stop(self) -> None:
        self.running = False
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "-w", "-t", "60", "stop")

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        if self.dir is None:
            return
        if (self.dir / "data" / "postmaster.pid").exists():
            try:
                self.stop()
            except Exception as error:
                print(f"tear-down: private PostgreSQL: {error}", file=sys.stderr)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None


@dataclass
class Reply:
    email: str
    sent_at: float
    done_at: float
    status: int  # 0: no HTTP reply (transport error or timeout)
    body: str
    retry_after: str | None
    error: str | None = None

    def form_failure(self) -> bool:
        try:
            body = json.loads(self.body)
        except ValueError:
            return False
        return (
            isinstance(body, dict)
            and body.get("message") == FORM_FAILURE
            and body.get("code") == self.status
        )

    def trace(self) -> bool:
        return any(marker in self.body.lower() for marker in TRACE_MARKERS)


def send_load(
    rate: float, seconds: int, senders: int, tag: str, started: float, abort: threading.Event
) -> list[Reply | None]:
    """`rate` signups/s for `seconds` from `senders` threads, open loop, one address each
    (None for the signups not sent because `abort` was set)."""
    url = f"http://127.0.0.1:{WEB_PORT}/api/v1/signups"

    def one(n: int) -> Reply | None:
        if abort.wait(max(0.0, started + n / rate - time.time())):
            return None
        email = f"{PREFIX}{tag}-{n}@example.com"
        body = {
            "first_name": "Fault",
            "last_name": "Test",
            "email": email,
            "zip": ZIPS[n % len(ZIPS)],
        }
        sent = time.time()
        try:
            reply = requests.post(url, json=body, timeout=20)  # a fresh connection each
        except requests.RequestException as error:
            return Reply(email, sent, time.time(), 0, "", None, type(error).__name__)
        return Reply(
            email,
            sent,
            time.time(),
            reply.status_code,
            reply.text[:4000],
            reply.headers.get("Retry-After"),
        )

    with ThreadPoolExecutor(max_workers=senders) as pool:
        return list(pool.map(one, range(int(rate * seconds))))


def stored_state(stack: FaultStack, tag: str) -> dict[str, tuple[int, int, dict]]:
    """Per address of this run: (leads, 'given' consent events, {outbox kind: rows})."""
    pattern = {"pattern": f"{PREFIX}{tag}-%"}
    state: dict[str, list] = collections.defaultdict(lambda: [0, 0, collections.Counter()])
    leads = stack.query(
        sa.text("SELECT email, count(*) FROM leads WHERE email LIKE :pattern GROUP BY email"),
        pattern,
    )
    for email, count in leads:
        state[email][0] = count
    events = stack.query(
        sa.text(
            "SELECT subject, count(*) FROM consent_events WHERE event_type = 'given' "
            "AND subject LIKE :pattern GROUP BY subject"
        ),
        pattern,
    )
    for subject, count in events:
        state[subject][1] = count
    rows = stack.query(
        sa.text(
            "SELECT l.email, o.kind, count(*) FROM outbox o JOIN leads l ON l.id = o.lead_id "
            "WHERE l.email LIKE :pattern GROUP BY l.email, o.kind"
        ),
        pattern,
    )
    for email, kind, count in rows:
        state[email][2][kind] = count
    return {
        email: (n_leads, n_events, dict(kinds))
        for email, (n_leads, n_events, kinds) in state.items()
    }


def web_log_lines(path: Path) -> tuple[int, list[str]]:
    """("database unavailable" warnings, "unexpected failure" lines) in the web log."""
    unavailable, unexpected = 0, []
    for line in path.read_text(errors="replace").splitlines():
        if "database unavailable" in line:
            unavailable += 1
        elif "unexpected failure" in line or "Traceback" in line:
            unexpected.append(line)
    return unavailable, unexpected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=5440, help="the private cluster's port")
    parser.add_argument("--pg-bin", type=Path, default=default_pg_bin())
    parser.add_argument("--rate", type=float, default=5)
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--at", type=float, default=20, help="second of the load to stop at")
    parser.add_argument("--outage", type=float, default=10, help="seconds stopped")
    parser.add_argument("--keep-logs", type=Path, help="copy the process logs here at the end")
    args = parser.parse_args()
    # SIGTERM runs the same clean-up as Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    tag = uuid.uuid4().hex[:6]
    marks: dict[str, float] = {}
    with PrivateCluster(args.port, args.pg_bin) as cluster, FaultStack(cluster.admin_url) as stack:
        abort = threading.Event()  # set on the way out: the load and the fault stop early
        fault_thread = None
        try:
            master = stack.web.pid
            web_workers = set(worker_pids(master))
            started = time.time() + 0.5

            fault_errors: list[BaseException] = []

            def fault() -> None:
                try:
                    if abort.wait(max(0.0, started + args.at - time.time())):
                        return
                    marks["stop"] = time.time()
                    cluster.stop()
                    marks["down"] = time.time()
                    abort.wait(max(0.0, marks["stop"] + args.outage - time.time()))
                    marks["start"] = time.time()
                    cluster.start()
                    marks["up"] = time.time()
                except BaseException as error:
                    fault_errors.append(error)

            fault_thread = threading.Thread(target=fault, daemon=True)
            fault_thread.start()
            sent: list[Reply | None] = []
            load = threading.Thread(
                target=lambda: sent.extend(
                    send_load(args.rate, args.seconds, args.senders, tag, started, abort)
                ),
                daemon=True,
            )
            load.start()
            while load.is_alive():
                stack.supervise()
                load.join(timeout=1)
            fault_thread.join()
            replies = [r for r in sent if r is not None]
            if fault_errors:
                raise RuntimeError("stopping or starting PostgreSQL failed") from fault_errors[0]
            if "up" not in marks:
                raise RuntimeError("the load ended before the outage did: raise --seconds")
            settled = stack.settle()
            state = stored_state(stack, tag)
            outbox = stack.outbox_rows()
            restarts = dict(stack.restarts)
            master_alive = stack.web.poll() is None
            replaced = len(web_workers - set(worker_pids(master))) if master_alive else None
            unavailable, unexpected = web_log_lines(stack.web_log)
            if args.keep_logs:
                stack.keep_logs(args.keep_logs)
                shutil.copy(cluster.dir / "server.log", args.keep_logs / "postgresql.log")
        finally:
            abort.set()
            if fault_thread is not None:
                fault_thread.join(timeout=120)
            if not cluster.running and cluster.dir is not None:
                try:
                    cluster.start()  # so the stack can drop its scratch database
                except Exception as error:
                    print(f"tear-down: starting PostgreSQL again: {error}", file=sys.stderr)

        # -- counting (the stack still runs: the sink and receiver hold the deliveries) --------
        def phase(r: Reply) -> str:
            if r.done_at < marks["stop"]:
                return "before"
            return "during" if r.sent_at < marks["up"] else "after"

        by_phase = {p: collections.Counter() for p in ("before", "during", "after")}
        for r in replies:
            by_phase[phase(r)][r.status] += 1
        refused = [r for r in replies if r.status == 503]
        with_message = sum(1 for r in refused if r.form_failure())
        with_retry_after = sum(1 for r in refused if r.retry_after)
        odd = [r for r in replies if r.status not in (202, 503)]
        traces = [r for r in replies if r.trace()]
        # The last 20 s of the load, or less if PostgreSQL came back later than that.
        window_start = max(started + args.seconds - 20, marks["up"])
        last = [r for r in replies if r.sent_at >= window_start]
        last_ok = sum(1 for r in last if r.status == 202)
        after = [r for r in replies if phase(r) == "after"]
        after_refused = [r for r in after if r.status != 202]
        first_ok = min((r.sent_at for r in after if r.status == 202), default=None)

        empty = (0, 0, {})
        complete, absent, committed_503, partial = [], [], [], []
        for r in replies:
            stored = state.get(r.email, empty)
            whole = stored[0] == 1 and stored[1] == 1 and stored[2] == KINDS
            if r.status == 202:
                (complete if whole else partial).append(r)
            elif stored == empty:
                absent.append(r)
            elif whole:
                committed_503.append(r)
            else:
                partial.append(r)
        accepted = [r for r in replies if r.status == 202]
        stored_people = [r.email for r in complete + committed_503]
        delivered = count_deliveries(stack.sink, stack.hooks, stored_people, PREFIX)
        with stack.sink.lock:
            to_absent = sum(stack.sink.recipients.get(r.email, 0) for r in absent)
        sent_statuses = {s for _, s, _ in outbox}

    failures = []
    if by_phase["before"].keys() - {202}:
        failures.append("refusals before the stop")
    if odd:
        failures.append("replies other than 202/503")
    if with_message < len(refused):
        failures.append("503 without the form's failure message")
    if traces:
        failures.append("traces in replies")
    if after_refused:
        failures.append("refusals after PostgreSQL was back")
    if last_ok < len(last):
        failures.append("refusals at the end of the load")
    if partial:
        failures.append("partial or missing rows")
    if (
        (delivered.welcome, delivered.welcome_missing, delivered.welcome_duplicates)
        != (len(stored_people), 0, 0)
        or delivered.dealer_mails != len(stored_people)
        or delivered.hook_hits != len(stored_people)
        or delivered.hook_deliveries != len(stored_people)
        or to_absent
    ):
        failures.append("deliveries not exactly once")
    if not settled or sent_statuses - {"sent"}:
        failures.append("outbox rows not all sent")
    if restarts or replaced:
        failures.append("processes restarted")
    if unexpected:
        failures.append("unexpected failures in the web log")

    def rel(at: float) -> float:
        return at - started

    what = f"stopped {args.outage:g} s" if args.outage else "stopped and started again at once"
    print(
        f"fault: private PostgreSQL (127.0.0.1:{args.port}) {what} "
        f"(from second {args.at:g}) during {args.seconds} s of {args.rate:g} signups/s, "
        f"{args.senders} senders"
    )
    print(
        f"  PostgreSQL stopping at {rel(marks['stop']):.1f} s, down at {rel(marks['down']):.1f} "
        f"s, starting at {rel(marks['start']):.1f} s, accepting again at "
        f"{rel(marks['up']):.1f} s"
    )
    print(
        f"  signups sent {len(replies)}: answered before the stop {dict(by_phase['before'])}; "
        f"sent or answered during the outage {dict(by_phase['during'])}; sent after "
        f"PostgreSQL was back {dict(by_phase['after'])}"
    )
    print(
        f"  503 replies {len(refused)}: with the form's failure message {with_message}, with "
        f"Retry-After {with_retry_after}; expected {len(refused)}"
    )
    print(
        f"  other replies {dict(collections.Counter(r.status for r in odd))} (0: no reply), "
        f"replies carrying a trace {len(traces)}; expected none"
    )
    print(
        f"  after PostgreSQL was back: refused {len(after_refused)} of {len(after)}; first "
        + (f"202 sent {first_ok - marks['up']:.1f} s after" if first_ok else "202: none")
        + "; expected 0 refused"
    )
    print(
        f"  signups sent in the last {started + args.seconds - window_start:.0f} s {len(last)}, "
        f"accepted {last_ok}; expected {len(last)} (gunicorn not restarted)"
    )
    print(
        f"  accepted {len(accepted)}: stored in full (1 lead, 1 'given' event, 3 outbox rows) "
        f"{len(complete)}; expected {len(accepted)}"
    )
    print(
        f"  refused {len(refused) + len(odd)}: nothing stored {len(absent)}, stored in full "
        f"although answered 503 (commit done, reply lost) {len(committed_503)}"
    )
    print(f"  partial or missing rows (any reply) {len(partial)}; expected 0")
    print(
        "\n".join(delivered.lines()).replace("welcome emails", "(stored signups) welcome emails", 1)
    )
    print(f"  messages to addresses refused and not stored {to_absent}; expected 0")
    print(
        f"  worker/relay restarts after exiting: {restarts or 0}; gunicorn master "
        + ("still running" if master_alive else "DIED")
        + f", web workers replaced {replaced}; expected 0"
    )
    print(
        f"  web log: 'database unavailable' lines {unavailable}, unexpected failures "
        f"{len(unexpected)}; expected 0 unexpected"
    )
    print(
        "  outbox rows (kind, status, count): "
        + ", ".join(f"{k} {s} {c}" for k, s, c in outbox)
        + ("" if settled else " (still open after 240 s)")
    )
    for r in (odd + after_refused + partial + committed_503)[:10]:
        stored = state.get(r.email, (0, 0, {}))
        print(
            f"    detail: +{rel(r.sent_at):.2f}s..+{rel(r.done_at):.2f}s status {r.status} "
            f"{r.error or r.body[:160]!r} stored {stored}"
        )
    for line in unexpected[:3]:
        print(f"    web log: {line[:1500]}")
    print("PASS" if not failures else "FAIL: " + "; ".join(failures))


if __name__ == "__main__":
    main()
