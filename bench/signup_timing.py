"""Signup timing: does a signup of an address already known answer slower than a new one?

Run from the repository root with the dev extra installed:

    python bench/signup_timing.py [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test]
                                  [--pairs 200] [--warmup 50]

It creates a scratch database on that PostgreSQL (dropped at the end), brings it to head, loads
the ZIP directory and the demo dealers, and drives the app in-process (Flask's test client, rate
limits off). After `--warmup` signups of addresses it will later repeat, it times `--pairs`
interleaved pairs: one signup of a new address and one of a known address, in a random order
within each pair, so drift of the machine's speed falls on both sides alike. It prints the
median time of each side, the median of the per-pair differences (known minus new) and its
noise: the standard error of that median estimated from the differences' spread (1.2533 x
1.4826 x MAD / sqrt(pairs)) and how many pairs the known signup lost. A difference within about
two standard errors is noise; one well outside it tells an observer whether an address is known.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from scratch import drop_postgres, scratch_postgres

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRET = "bench-secret-key-" + "x" * 32
ZIPS = ("10001", "10019", "60601", "90012", "02215", "29401", "33101", "98101")


def body(email: str, n: int) -> dict:
    return {"first_name": "Tim", "last_name": "Ing", "email": email, "zip": ZIPS[n % len(ZIPS)]}


def timed_signup(client, email: str, n: int) -> float:
    """Milliseconds one signup took, as its client sees it; it must be accepted."""
    started = time.perf_counter()
    reply = client.post("/api/v1/signups", json=body(email, n))
    elapsed = (time.perf_counter() - started) * 1000
    if reply.status_code != 202:
        raise RuntimeError(f"signup answered {reply.status_code}: {reply.get_data(as_text=True)}")
    return elapsed


def interleaved_pairs(client, pairs: int, known: list[str], rng: random.Random, tag: str):
    """`pairs` (new ms, known ms) pairs, the order inside each pair chosen at random."""
    results = []
    for n in range(pairs):
        new_email = f"new-{tag}-{n}@example.com"
        known_email = known[n % len(known)]
        if rng.random() < 0.5:
            new_ms = timed_signup(client, new_email, n)
            known_ms = timed_signup(client, known_email, n)
        else:
            known_ms = timed_signup(client, known_email, n)
            new_ms = timed_signup(client, new_email, n)
        results.append((new_ms, known_ms))
    return results


def summary(results) -> dict[str, float]:
    """Medians of both sides, the median paired difference (known - new) and its standard
    error from the differences' median absolute deviation."""
    differences = [known - new for new, known in results]
    middle = statistics.median(differences)
    mad = statistics.median(abs(d - middle) for d in differences)
    return {
        "new_ms": statistics.median(new for new, _ in results),
        "known_ms": statistics.median(known for _, known in results),
        "difference_ms": middle,
        "standard_error_ms": 1.2533 * 1.4826 * mad / len(differences) ** 0.5,
        "known_slower": sum(d > 0 for d in differences) / len(differences),
    }


def prepared_app(url: str, instance: Path):
    from leadsvc.app import create_app
    from leadsvc.dealers.directory import import_dealers
    from leadsvc.extensions import db
    from leadsvc.release import DEMO_DEALERS, prepare_database
    from leadsvc.settings import Settings

    settings = Settings(
        database_url=url,
        secret_key=SECRET,
        instance_path=instance,
        rate_limits_enabled=False,
        min_fill_seconds=0,
    )
    app = create_app(settings)
    app.config["TESTING"] = True  # no in-process drainer: as with Redis, the request path only
    prepare_database(app)
    with db.sessionmaker(app)() as session:
        import_dealers(session, DEMO_DEALERS.read_text(encoding="utf-8"))
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args()
    url = scratch_postgres(args.postgres)
    try:
        with tempfile.TemporaryDirectory() as instance:
            app = prepared_app(url, Path(instance))
            client = app.test_client()
            known = [f"known-{n}@example.com" for n in range(args.warmup)]
            for n, email in enumerate(known):
                timed_signup(client, email, n)
            figures = summary(interleaved_pairs(client, args.pairs, known, random.Random(7), "b"))
    finally:
        drop_postgres(args.postgres, url)
    print(f"{args.pairs} interleaved pairs on PostgreSQL (in-process client)")
    print(f"median new signup:   {figures['new_ms']:.2f} ms")
    print(f"median known signup: {figures['known_ms']:.2f} ms")
    print(
        f"median difference (known - new): {figures['difference_ms']:+.2f} ms "
        f"+/- {figures['standard_error_ms']:.2f} ms (standard error); "
        f"known slower in {figures['known_slower']:.0%} of pairs"
    )


if __name__ == "__main__":
    main()
