"""Many processes behind a real load balancer: HAProxy with `config/haproxy.cfg` in front of three
gunicorn processes, two `leadsvc worker` and two `leadsvc relay`, on one PostgreSQL database and
one Redis database, delivering to a real SMTP server and a real webhook receiver.

5,000 signups go through HAProxy from several clients at once; in the middle one web process,
one worker and one relay are SIGKILLed with everything they started (as when a machine dies).
The worker and the relay are started again at once, as a process manager would; the web process
stays down and HAProxy's health check on `/readyz` takes it out of the rotation. Then, once the
outbox is drained: every signup answered 2xx is stored once with one `given` consent event;
a signup answered otherwise is stored in full or not at all; every email arrived exactly once
(by Message-ID; a row the killed worker left `unknown` may have arrived, never twice); every
dealer webhook arrived, a second time only for a row that had a second try and with the same
delivery id; no job met a row already settled or in flight (no row enqueued twice); the consent
chain verifies with every event sealed once. The figures (signups/s, deliveries/s per worker,
drain time) are printed.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import time
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from leadsvc.db import create_db_engine
from leadsvc.dealers.directory import import_dealers
from tests.conftest import reset_postgres, wait_until
from tests.factories import TEST_WEBHOOK_NETWORKS
from tests.jobs.support import SETTING_NAMES
from tests.ops.cluster import (
    CLIENTS,
    ENV,
    HAPROXY,
    KILL_AT,
    MESSAGE_ID,
    PREFIX,
    SIGNUPS,
    Cluster,
    Report,
    consent_verify,
    dealers_with_webhooks,
    open_rows,
    send_signups,
    wait_for_drain,
)


@dataclasses.dataclass
class Run:
    """What one run sent and measured."""

    statuses: dict[int, int]
    load_seconds: float
    backlog: int
    drain_seconds: float
    verified: str

    def addresses(self, accepted: bool) -> set[str]:
        return {
            f"{PREFIX}{n}@example.com"
            for n, status in self.statuses.items()
            if (200 <= status < 300) == accepted
        }


def run_deployment(engine, env: dict[str, str], zips: list[str], logs: Path) -> Run:
    """Start the deployment, send the signups (killing a web process, a worker and a relay on
    the way), wait for the outbox to drain and the consent events to be sealed, stop it all."""
    cluster = Cluster(env, logs)
    try:
        cluster.start()
        kills = {
            "web": lambda: cluster.kill_web("web2"),
            "worker": lambda: cluster.kill_and_restart("worker-1"),
            "relay": lambda: cluster.kill_and_restart("relay-1"),
        }

        def on_sent(count: int) -> None:
            for what, at in KILL_AT.items():
                if count == at:
                    kills[what]()

        started = time.monotonic()
        statuses = send_signups(cluster.url, zips, on_sent)
        load_seconds = time.monotonic() - started
        backlog = open_rows(engine)
        drain_seconds = wait_for_drain(engine, cluster)
        verified = wait_until(
            lambda: next((o for o in [consent_verify(env)] if " 0 events not sealed" in o), None),
            30,
            "the relays to seal every consent event",
            interval=1,
        )
    finally:
        cluster.stop()
    return Run(statuses, load_seconds, backlog, drain_seconds, verified.strip())


@pytest.mark.slow
@pytest.mark.alone
def test_signups_through_haproxy_survive_killed_processes(
    postgres_url, redis, redis_url, smtp, webhook_receiver, tmp_path
):
    assert Path(HAPROXY).is_file(), f"{HAPROXY} is missing: apt-get install haproxy"
    reset_postgres(postgres_url)
    engine = create_db_engine(postgres_url)
    directory, zips = dealers_with_webhooks(webhook_receiver.url)
    with Session(engine) as session:
        report = import_dealers(session, directory, webhook_networks=TEST_WEBHOOK_NETWORKS)
        assert report.applied, report.rows[:3]
    env = {k: v for k, v in os.environ.items() if k not in SETTING_NAMES} | ENV
    env |= {
        "DATABASE_URL": postgres_url,
        "REDIS_URL": redis_url,
        "SMTP_URL": smtp.url,
        "INSTANCE_PATH": str(tmp_path / "instance"),
    }
    (tmp_path / "logs").mkdir()
    run = run_deployment(engine, env, zips, tmp_path / "logs")
    report = Report(engine)
    engine.dispose()
    print_figures(run, report)
    # HAProxy's health check took the killed web process out of the rotation.
    assert "Server web/web2 is DOWN" in (tmp_path / "logs" / "haproxy.log").read_text()

    stored = check_signups(run, report)
    check_emails(report, smtp)
    check_webhooks(report, webhook_receiver)
    # The consent chain: every event sealed once, and it verifies.
    assert run.verified.startswith("OK:"), run.verified
    assert f" {len(stored)} events verified" in run.verified, run.verified
    check_no_row_enqueued_twice(report)


def print_figures(run: Run, report: Report) -> None:
    accepted = len(run.addresses(accepted=True))
    delivering = report.delivering_seconds()
    print(
        f"\n{SIGNUPS} signups through HAProxy from {CLIENTS} clients in {run.load_seconds:.1f} s: "
        f"{accepted / run.load_seconds:.0f} accepted/s; replies "
        f"{dict(collections.Counter(run.statuses.values()))}\n"
        f"outbox rows open when the load ended {run.backlog} of {report.rows}; drained "
        f"{run.drain_seconds:.1f} s later ({run.load_seconds + run.drain_seconds:.1f} s after "
        f"the first signup)\ndeliveries {report.sent} in {delivering:.1f} s: "
        f"{report.sent / delivering / 2:.1f}/s per worker (2 workers)\n"
        f"outbox rows by kind and status {dict(report.by_status)}; rows under a later "
        f"generation {report.regenerated}; unknown {report.unknown}\n{run.verified}"
    )


def check_signups(run: Run, report: Report) -> dict[str, tuple[int, int]]:
    """Stored once each (one lead, one `given` event, three outbox rows); a signup answered
    otherwise is stored in full or not at all. Returns what is stored."""
    accepted, refused = run.addresses(accepted=True), run.addresses(accepted=False)
    assert len(run.statuses) == SIGNUPS
    stored = report.stored()
    wrong = {a: stored.get(a) for a in accepted if stored.get(a) != (1, 3)}
    assert not wrong, f"accepted signups not stored once in full: {wrong}"
    half = {a: stored[a] for a in refused if a in stored and stored[a] != (1, 3)}
    assert not half, f"half-accepted signups: {half}"
    committed = sorted(a for a in refused if a in stored)
    print(f"answered non-2xx {len(refused)}, of which stored in full (reply lost) {committed}")
    assert set(stored) == accepted | set(committed)
    # Only a request in flight on the killed web process may fail: one per client at the most.
    assert len(refused) <= CLIENTS, collections.Counter(run.statuses.values())
    # Every row settled: sent, or `unknown` for the one email the killed worker may have held.
    settled = {(kind, "sent") for kind in ("welcome_email", "dealer_email", "dealer_webhook")}
    settled |= {("welcome_email", "unknown"), ("dealer_email", "unknown")}
    assert set(report.by_status) <= settled, report.by_status
    assert len(report.unknown) <= 1, report.unknown
    return stored


def check_emails(report: Report, smtp) -> None:
    """Exactly once by Message-ID: every sent row's email; an unknown row's at most once."""
    arrived = collections.Counter()
    for _, _, data in smtp.received:
        arrived.update(int(m) for m in MESSAGE_ID.findall(data))
    assert sum(arrived.values()) == len(smtp.received)
    twice = {i: c for i, c in arrived.items() if c > 1}
    assert not twice, f"emails delivered more than once: {twice}"
    assert set(arrived) - set(report.unknown) == report.email_ids
    print(f"unknown rows whose email arrived: {sorted(set(report.unknown) & set(arrived))}")


def check_webhooks(report: Report, receiver) -> None:
    """Each row's delivery id arrived; more than once only for a row tried more than once."""
    hooks = collections.Counter(r["headers"].get("X-Leadsvc-Delivery") for r in receiver.requests)
    assert set(hooks) == {f"outbox-{i}" for i in report.webhook_ids}
    repeated = {d: c for d, c in hooks.items() if c > 1}
    assert all(report.attempts[int(d.split("-")[1])] >= c for d, c in repeated.items()), repeated
    print(f"webhooks delivered again (same delivery id, a later try): {repeated}")


def check_no_row_enqueued_twice(report: Report) -> None:
    """No job met a row another job had settled or held (the sweep leaves alone jobs a worker
    has taken and not started yet)."""
    rows = "\n".join(map(str, report.duplicate_attempts))
    assert not report.duplicate_attempts, f"jobs met rows already settled or in flight:\n{rows}"
