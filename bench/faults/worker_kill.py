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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from counting import count_deliveries  # noqa: E402
from stack import FaultStack  # noqa: E402


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
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--rate", type=float, default=2)
    parser.add_argument("--seconds", type=int, default=40)
    parser.add_argument("--every", type=float, default=2)
    args = parser.parse_args()

    timeouts = {"JOB_TIMEOUT": "10", "SMTP_TIMEOUT": "5", "WEBHOOK_TIMEOUT": "3"}
    with FaultStack(args.postgres, timeouts) as stack:
        kills = collections.Counter()
        next_kill = time.time() + args.every

        def kill(now: float) -> None:
            nonlocal next_kill
            if now >= next_kill:
                next_kill += args.every
                kill_one(stack.processes, kills)

        load = stack.paced_signups(args.rate, args.seconds, kill)
        stack.settle()
        outbox = stack.outbox_rows()
        left_open = stack.open_rows()
        restarts = dict(stack.restarts)
        delivered = count_deliveries(stack.sink, stack.hooks, load.accepted, "r-")

    print(
        f"fault: rq worker or work-horse SIGKILLed every {args.every:g} s during "
        f"{args.seconds} s of {args.rate:g} signups/s; kills {dict(kills)}"
    )
    print(
        f"  signups sent {load.sent}, accepted (202) {len(load.accepted)}, "
        f"others {dict(load.refused)}"
    )
    note = " (addresses shared by leads of one dealer, so duplicates show in the outbox rows below)"
    print("\n".join(delivered.lines(dealer_note=note)))
    print(f"  worker/relay restarts after exiting: {restarts or 0}")
    print("  outbox rows (kind, status, count): " + ", ".join(f"{k} {s} {c}" for k, s, c in outbox))
    for line in left_open:
        print(f"  left open: {line}")


if __name__ == "__main__":
    main()
