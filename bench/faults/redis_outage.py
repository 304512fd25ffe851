"""Fault: the private Redis stopped for 20 s in the middle of a 60 s signup load.

Run from the repository root with the dev extra installed:

    python bench/faults/redis_outage.py [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test]
                                        [--rate 2] [--seconds 60] [--outage 20]

Starts, all on loopback: a scratch database (dropped at the end), a private Redis on
127.0.0.1:6390 (no persistence, so the outage also loses every queued job), an SMTP sink
(aiosmtpd), a webhook receiver for every demo dealer, gunicorn, two `leadsvc worker` and a
`leadsvc relay --interval 2`. It sends `--rate` signups per second for `--seconds`, stops Redis
from second 20 to second 20 + `--outage` and starts it again, restarts any worker or relay that
exited (as a process manager would; counted), waits until no outbox row is open (at most 240 s)
and prints: signups accepted, emails at the sink and webhook hits, each against what the
accepted signups should produce (a welcome email, an ADF email and a webhook each), and the
duplicates. Expected: every accepted signup's messages delivered exactly once.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from counting import count_deliveries  # noqa: E402
from stack import FaultStack  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--rate", type=float, default=2)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--outage", type=int, default=20)
    args = parser.parse_args()

    with FaultStack(args.postgres) as stack:
        outage_start = time.time() + 20
        outage_end = outage_start + args.outage

        def outage(now: float) -> None:
            if stack.redis is not None and outage_start <= now < outage_end:
                stack.stop_redis()
            elif stack.redis is None and now >= outage_end:
                stack.start_redis()

        load = stack.paced_signups(args.rate, args.seconds, outage)
        stack.settle()
        outbox = stack.outbox_rows()
        restarts = dict(stack.restarts)
        delivered = count_deliveries(stack.sink, stack.hooks, load.accepted, "r-")

    print(
        f"fault: private Redis stopped {args.outage} s (from second 20) during "
        f"{args.seconds} s of {args.rate:g} signups/s"
    )
    print(
        f"  signups sent {load.sent}, accepted (202) {len(load.accepted)}, "
        f"others {dict(load.refused)}"
    )
    print("\n".join(delivered.lines()))
    print(f"  worker/relay restarts after exiting: {restarts or 0}")
    print("  outbox rows (kind, status, count): " + ", ".join(f"{k} {s} {c}" for k, s, c in outbox))


if __name__ == "__main__":
    main()
