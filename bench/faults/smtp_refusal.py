"""Fault: the mail server refuses for a while (4xx), and refuses some addresses for good (5xx).

Run from the repository root with the dev extra installed:

    python bench/faults/smtp_refusal.py [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test]
                                        [--refuse-seconds 12] [--signups 20]

Starts, all on loopback: a scratch database on that PostgreSQL (dropped at the end), a private
Redis on 127.0.0.1:6390, an SMTP sink (aiosmtpd) that answers RCPT with `451` for the first
`--refuse-seconds` and `550` for every address containing `perm`, gunicorn, one `leadsvc worker`
and `leadsvc relay` (JOB_RETRY_INTERVALS=2 x 10, so retries come quickly). It sends `--signups`
signups plus 5 to `perm...` addresses, waits until no outbox row is pending (at most 180 s),
and prints the counts: refusals, messages accepted, duplicates, outbox rows by kind and status.
Expected: every email delivered exactly once after the refusals end, the 5 permanently refused
welcome emails `failed`, no duplicate.
"""

from __future__ import annotations

import argparse
import collections
import email
import email.policy
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from counting import OPEN_ROWS, SMTP_PORT  # noqa: E402
from signup_throughput import (  # noqa: E402
    REDIS_PORT,
    WEB_PORT,
    gunicorn,
    scratch_postgres,
    service_env,
    start_redis,
    tear_down,
)


class RefusingSink:
    def __init__(self, refuse_until: float):
        self.refuse_until = refuse_until
        self.accepted: list[bytes] = []
        self.refusals = collections.Counter()
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if "perm" in address:
            with self.lock:
                self.refusals["550"] += 1
            return "550 5.1.1 mailbox unavailable"
        if time.time() < self.refuse_until:
            with self.lock:
                self.refusals["451"] += 1
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        with self.lock:
            self.accepted.append(envelope.content)
        return "250 Message accepted"


def main() -> None:
    from aiosmtpd.controller import Controller

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--refuse-seconds", type=float, default=12)
    parser.add_argument("--signups", type=int, default=20)
    args = parser.parse_args()

    sink = RefusingSink(refuse_until=float("inf"))
    controller = Controller(sink, hostname="127.0.0.1", port=SMTP_PORT)
    controller.start()
    processes: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="leadsvc-fault-") as tmp:
        tmp_path = Path(tmp)
        log = tmp_path / "processes.log"
        pg_url = scratch_postgres(args.postgres)
        redis = start_redis(REDIS_PORT, tmp_path)
        try:
            env = service_env(
                pg_url,
                tmp_path,
                {
                    "SMTP_URL": f"smtp://127.0.0.1:{SMTP_PORT}",
                    "JOB_RETRY_INTERVALS": ",".join(["2"] * 10),
                },
            )
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
            processes.append(gunicorn("wsgi:app", ROOT / "config/gunicorn.conf.py", env, log))
            for command in (["worker"], ["relay", "--interval", "2"]):
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
            sink.refuse_until = time.time() + args.refuse_seconds
            tag = uuid.uuid4().hex[:6]
            emails = [f"ok-{tag}-{n}@example.com" for n in range(args.signups)]
            emails += [f"perm-{tag}-{n}@example.com" for n in range(5)]
            statuses = collections.Counter()
            with requests.Session() as http:
                for n, address in enumerate(emails):
                    reply = http.post(
                        f"http://127.0.0.1:{WEB_PORT}/api/v1/signups",
                        json={
                            "first_name": "Fault",
                            "last_name": "Test",
                            "email": address,
                            "zip": ["10001", "60601", "94103", "30303"][n % 4],
                        },
                        timeout=10,
                    )
                    statuses[reply.status_code] += 1
            engine = sa.create_engine(pg_url)
            deadline = time.time() + 180
            while time.time() < deadline:
                with engine.begin() as connection:
                    open_rows = connection.scalar(OPEN_ROWS)
                if not open_rows and time.time() > sink.refuse_until:
                    break
                time.sleep(1)
            time.sleep(3)
            with engine.begin() as connection:
                outbox = connection.execute(
                    sa.text(
                        "SELECT kind, status, count(*), max(attempts) FROM outbox "
                        "GROUP BY kind, status ORDER BY kind, status"
                    )
                ).all()
            engine.dispose()
        finally:
            tear_down(processes, redis, args.postgres, pg_url)
            controller.stop()

    with sink.lock:
        messages = [email.message_from_bytes(m, policy=email.policy.default) for m in sink.accepted]
        refusals = dict(sink.refusals)
    ids = collections.Counter(str(m["Message-ID"]) for m in messages)
    to_person = sum(
        1
        for m in messages
        if "@example.com" in str(m["To"]) and any(e in str(m["To"]) for e in emails)
    )
    print(f"fault: SMTP refusing (451) for {args.refuse_seconds:g} s, 550 for perm-* addresses")
    print(f"  signups sent {len(emails)} ({args.signups} ok-*, 5 perm-*), replies {dict(statuses)}")
    print(f"  SMTP refusals {refusals}")
    print(
        f"  messages accepted by the sink {len(messages)} (to the people {to_person}, "
        f"to dealers {len(messages) - to_person}), duplicate Message-IDs "
        f"{sum(c - 1 for c in ids.values())}"
    )
    print("  outbox rows (kind, status, count, max tries):")
    for kind, status, count, tries in outbox:
        print(f"    {kind:<22} {status:<10} {count:>4}   {tries}")


if __name__ == "__main__":
    main()
