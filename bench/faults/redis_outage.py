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
import collections
import sys
import time
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from counting import count_deliveries  # noqa: E402
from signup_throughput import WEB_PORT  # noqa: E402
from stack import FaultStack  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--rate", type=float, default=2)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--outage", type=int, default=20)
    args = parser.parse_args()

    with FaultStack(args.postgres) as stack:
        tag = uuid.uuid4().hex[:6]
        accepted, refused = [], collections.Counter()
        started = time.time()
        outage_start, outage_end = started + 20, started + 20 + args.outage
        zips = ["10001", "60601", "94103", "30303", "77002", "98101"]
        n = 0
        with requests.Session() as http:
            while time.time() - started < args.seconds:
                now = time.time()
                if stack.redis is not None and outage_start <= now < outage_end:
                    stack.stop_redis()
                elif stack.redis is None and now >= outage_end:
                    stack.start_redis()
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
                stack.supervise()
                time.sleep(max(0.0, started + n / args.rate - time.time()))
        stack.settle()
        outbox = stack.outbox_rows()
        restarts = dict(stack.restarts)
        delivered = count_deliveries(stack.sink, stack.hooks, accepted, "r-")

    print(f"fault: private Redis stopped {args.outage} s (from second 20) during "
          f"{args.seconds} s of {args.rate:g} signups/s")  # fmt: skip
    print(f"  signups sent {n}, accepted (202) {len(accepted)}, others {dict(refused)}")
    print("\n".join(delivered.lines()))
    print(f"  worker/relay restarts after exiting: {restarts or 0}")
    print("  outbox rows (kind, status, count): "
          + ", ".join(f"{k} {s} {c}" for k, s, c in outbox))  # fmt: skip


if __name__ == "__main__":
    main()
