"""Fault: rq workers and their work-horses SIGKILLed repeatedly during a signup load.

Run from the repository root with the dev extra installed:

    python bench/faults/worker_kill.py [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test]
                                       [--rate 2] [--seconds 40] [--every 2]

Starts, all on loopback: a scratch database (dropped at the end), a private Redis on
127.0.0.1:6390, an SMTP sink (aiosmtpd), a webhook receiver for every demo dealer, gunicorn, two
`leadsvc worker` and a `leadsvc relay --interval 2` (JOB_TIMEOUT=10, so a killed try's lease
runs out after 12 s). Every `--every` seconds of the load it SIGKILLs, in turn, a busy
work-horse (a worker's forked child) if there is one, else a worker; a worker that died is
started again (as a process manager would). Then it waits until no outbox row is open (at most
240 s) and prints emails at the sink and webhook hits against what the accepted signups should
produce, the duplicates, and the outbox rows by status. Expected: no email twice (a try killed
after its hand-off ends `unknown`, never resent by itself); webhooks at least once, duplicates
only with the same delivery id.
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
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

from counting import OPEN_ROWS, SMTP_PORT, Hooks, Sink  # noqa: E402
from e2e_latency import RECEIVER_PORT, dealers_with_webhooks  # noqa: E402
from signup_throughput import (  # noqa: E402
    REDIS_PORT,
    WEB_PORT,
    drop_postgres,
    gunicorn,
    scratch_postgres,
    service_env,
    start_redis,
    stop,
)


def kill_one(processes: dict[str, subprocess.Popen], kills: collections.Counter) -> None:
    """SIGKILL a busy work-horse if there is one (alternating with a worker), else a worker."""
    workers = [p for name, p in processes.items() if name.startswith("worker") and p.poll() is None]
    horses = []
    for worker in workers:
        try:
            children = Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text().split()
        except OSError:
            continue
        horses += [int(pid) for pid in children]
    if horses and (kills["work-horse"] <= kills["worker"] or not workers):
        target, what = horses[0], "work-horse"
    elif workers:
        target, what = workers[kills["worker"] % len(workers)].pid, "worker"
    else:
        return
    try:
        os.kill(target, signal.SIGKILL)
        kills[what] += 1
    except ProcessLookupError:
        pass


def main() -> None:
    from aiosmtpd.controller import Controller

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--rate", type=float, default=2)
    parser.add_argument("--seconds", type=int, default=40)
    parser.add_argument("--every", type=float, default=2)
    args = parser.parse_args()

    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=SMTP_PORT)
    controller.start()
    hooks = Hooks()
    threading.Thread(target=hooks.serve_forever, daemon=True).start()
    processes: dict[str, subprocess.Popen] = {}
    restarts = collections.Counter()
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
                    "JOB_TIMEOUT": "10",
                    "SMTP_TIMEOUT": "5",
                    "WEBHOOK_TIMEOUT": "3",
                },
            )
            dealers = tmp_path / "dealers.csv"
            dealers.write_text(dealers_with_webhooks(f"http://127.0.0.1:{RECEIVER_PORT}"))
            for command in (["db", "upgrade"], ["dealers", "import", str(dealers)]):
                subprocess.run(["leadsvc", *command], cwd=ROOT, env=env, check=True,
                               stdout=subprocess.DEVNULL, timeout=600)  # fmt: skip
            web = gunicorn("wsgi:app", ROOT / "config/gunicorn.conf.py", env, log)
            commands = {"worker-1": ["worker"], "worker-2": ["worker"],
                        "relay": ["relay", "--interval", "2"]}  # fmt: skip

            def supervise():
                for name, command in commands.items():
                    process = processes.get(name)
                    if process is None or process.poll() is not None:
                        if process is not None:
                            restarts[name] += 1
                        processes[name] = subprocess.Popen(
                            ["leadsvc", *command], cwd=ROOT, env=env, stdout=log.open("ab"),
                            stderr=subprocess.STDOUT)  # fmt: skip

            supervise()
            time.sleep(3)
            tag = uuid.uuid4().hex[:6]
            accepted, refused = [], collections.Counter()
            started = time.time()
            kills = collections.Counter()
            next_kill = started + args.every
            zips = ["10001", "60601", "94103", "30303", "77002", "98101"]
            n = 0
            with requests.Session() as http:
                while time.time() - started < args.seconds:
                    if time.time() >= next_kill:
                        next_kill += args.every
                        kill_one(processes, kills)
                    address = f"r-{tag}-{n}@example.com"
                    try:
                        reply = http.post(f"http://127.0.0.1:{WEB_PORT}/api/v1/signups",
                                          json={"first_name": "Fault", "last_name": "Test",
                                                "email": address, "zip": zips[n % len(zips)]},
                                          timeout=10)  # fmt: skip
                        status = reply.status_code
                    except requests.RequestException:
                        status = 0
                    if status == 202:
                        accepted.append(address)
                    else:
                        refused[status] += 1
                    n += 1
                    supervise()
                    time.sleep(max(0.0, started + n / args.rate - time.time()))
            engine = sa.create_engine(pg_url)
            deadline = time.time() + 240
            while time.time() < deadline:
                supervise()
                with engine.begin() as connection:
                    if not connection.scalar(OPEN_ROWS):
                        break
                time.sleep(1)
            time.sleep(5)  # late duplicates, if any
            with engine.begin() as connection:
                outbox = connection.execute(sa.text(
                    "SELECT kind, status, count(*) FROM outbox GROUP BY kind, status "
                    "ORDER BY kind, status")).all()  # fmt: skip
            engine.dispose()
        finally:
            for process in processes.values():
                stop(process)
            if "web" in locals():
                stop(web)
            redis.terminate()
            redis.wait(timeout=10)
            drop_postgres(args.postgres, pg_url)
            controller.stop()
            hooks.shutdown()

    with sink.lock:
        recipients = dict(sink.recipients)
    with hooks.lock:
        deliveries = dict(hooks.deliveries)
    welcome = sum(recipients.get(a, 0) for a in accepted)
    welcome_missing = sum(1 for a in accepted if a not in recipients)
    welcome_dup = sum(recipients[a] - 1 for a in accepted if recipients.get(a, 0) > 1)
    dealer_mails = sum(c for a, c in recipients.items() if not a.startswith("r-"))
    hook_hits = sum(deliveries.values())
    print(f"fault: rq worker or work-horse SIGKILLed every {args.every:g} s during "
          f"{args.seconds} s of {args.rate:g} signups/s; kills {dict(kills)}")  # fmt: skip
    print(f"  signups sent {n}, accepted (202) {len(accepted)}, others {dict(refused)}")
    print(f"  welcome emails at the sink {welcome} (missing {welcome_missing}, duplicates "
          f"{welcome_dup}); expected {len(accepted)}")  # fmt: skip
    print(
        f"  dealer (ADF) emails at the sink {dealer_mails} (addresses shared by leads of one "
        f"dealer, so duplicates show in the outbox rows below); expected {len(accepted)}"
    )
    print(f"  webhook hits {hook_hits}, distinct deliveries {len(deliveries)}, duplicates "
          f"{hook_hits - len(deliveries)}; expected {len(accepted)}")  # fmt: skip
    print(f"  worker/relay restarts after exiting: {dict(restarts) or 0}")
    print("  outbox rows (kind, status, count): "
          + ", ".join(f"{k} {s} {c}" for k, s, c in outbox))  # fmt: skip


if __name__ == "__main__":
    main()
