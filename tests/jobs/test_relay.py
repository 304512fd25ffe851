"""The relay against the real Redis (no worker): what it dispatches, replaces and leaves alone."""

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from rq import Queue
from rq.job import Job, JobStatus

from leadsvc.extensions import db
from leadsvc.jobs import relay as relay_module
from leadsvc.jobs.queue import outbound_queues, redis_client
from leadsvc.jobs.relay import Relay, relay_once, run_relay
from leadsvc.outbox.models import OutboxMessage
from tests.conftest import wait_until
from tests.factories import valid_signup
from tests.jobs.support import FAST, invoke, kinds_and_statuses, outbox

CLOSED_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@pytest.fixture
def rq_app(make_app, redis, redis_url):
    return make_app(redis_url=redis_url, **FAST)


def sign_up(app, n: int = 0) -> None:
    body = valid_signup(email=f"person{n}@example.com")
    assert app.test_client().post("/api/v1/signups", json=body).status_code == 202


@pytest.fixture
def row(rq_app, session):
    sign_up(rq_app)
    [row] = outbox(session)
    return row


def queued_ids(redis, rq_app) -> list[str]:
    queues = outbound_queues(redis, rq_app.config["LEADSVC_SETTINGS"].job_timeout)
    return [job_id for queue in queues for job_id in queue.job_ids]


def make_old(session) -> None:
    """Queued rows last touched a minute ago: past the sweep's grace."""
    old = datetime.now(UTC) - timedelta(minutes=1)
    session.execute(sa.update(OutboxMessage).values(updated_at=old))
    session.commit()


def job_of_id(redis, job_id: str) -> Job:
    return Job.fetch(job_id, connection=redis, serializer="json")


def job_of(redis, row, generation: int = 1) -> Job:
    return Job.fetch(f"outbox-{row.id}-{generation}", connection=redis, serializer="json")


@pytest.fixture
def running_relay(rq_app, redis):
    """`run_relay` in a thread, with full passes a minute apart: only its poll for new rows
    makes it dispatch."""
    stop = threading.Event()
    thread = threading.Thread(target=run_relay, args=(rq_app, redis, 60.0, stop), daemon=True)
    thread.start()
    time.sleep(0.3)  # its first full pass before the test's signups
    yield thread
    stop.set()
    thread.join(10)
    assert not thread.is_alive()


def test_the_signup_waits_for_the_relay_and_touches_no_redis(rq_app, redis, row, session):
    assert queued_ids(redis, rq_app) == []
    assert kinds_and_statuses(session) == [("welcome_email", "pending")]


@pytest.mark.alone
@pytest.mark.parametrize("database_url", ["postgresql", "sqlite"], indirect=True)
def test_a_running_relay_dispatches_a_signup_at_once(rq_app, redis, session, running_relay):
    started = time.monotonic()
    sign_up(rq_app)
    [row] = outbox(session)
    wait_until(lambda: queued_ids(redis, rq_app), 5, "the job to be queued", 0.005)
    took = time.monotonic() - started
    assert took < 0.5, took
    assert queued_ids(redis, rq_app) == [f"outbox-{row.id}-1"]
    assert kinds_and_statuses(session) == [("welcome_email", "queued")]
    job = job_of(redis, row)
    assert (job.func_name, job.args, job.timeout) == (
        "leadsvc.jobs.tasks.deliver_rows",
        [[row.id]],
        3,
    )


def test_two_relays_never_hand_on_the_same_row(rq_app, redis, session):
    for n in range(120):
        sign_up(rq_app, n)
    relays = [
        Relay(rq_app, redis_client(rq_app.config["LEADSVC_SETTINGS"].redis_url)) for _ in range(2)
    ]
    counts = []
    threads = [threading.Thread(target=lambda r=r: counts.append(r.dispatch())) for r in relays]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    job_ids = queued_ids(redis, rq_app)
    assert sum(counts) == 120 and len(job_ids) == len(set(job_ids)) == 6  # batches of 20
    held = [row_id for job_id in job_ids for row_id in job_of_id(redis, job_id).args[0]]
    assert len(held) == 120 and len(set(held)) == 120  # every row in exactly one job
    assert {status for _, status in kinds_and_statuses(session)} == {"queued"}


def test_rows_whose_hand_off_failed_go_back_and_are_dispatched_later(rq_app, redis, row, session):
    down = Relay(rq_app, redis_client(CLOSED_REDIS))
    with pytest.raises(Exception, match="(?i)connect"):
        down.dispatch()
    session.expire_all()
    [back] = outbox(session)
    assert (back.status, back.generation) == ("pending", 2)
    assert Relay(rq_app, redis).dispatch() == 1
    assert queued_ids(redis, rq_app) == [f"outbox-{row.id}-2"]


def test_a_job_redis_lost_is_replaced_under_a_new_generation(rq_app, redis, row, session):
    assert relay_once(rq_app, redis).enqueued == 1
    redis.flushdb()  # Redis restarted without persistence
    assert relay_once(rq_app, redis).swept == 0  # queued just now: within the grace
    make_old(session)
    report = relay_once(rq_app, redis)
    assert (report.swept, report.enqueued) == (1, 1)
    assert queued_ids(redis, rq_app) == [f"outbox-{row.id}-2"]
    assert relay_once(rq_app, redis).enqueued == 0


@pytest.mark.parametrize(
    ("change", "lost"),
    [
        ("waiting", False),  # in its queue: a worker will take it
        ("failed", True),  # ended (the database was down while it ran) without settling the row
        ("started long ago", True),  # its worker was SIGKILLed while running it
        ("taken, never started", True),  # in no list, still queued: its worker is gone
        ("taken just now", False),  # a worker took it and is about to start it
        ("taken long ago", True),  # its worker died between taking and starting it
        ("started now", False),  # running
        ("scheduled", False),  # rq will retry it
    ],
)
def test_the_sweep_replaces_only_jobs_nothing_will_run(rq_app, redis, row, session, change, lost):
    relay_once(rq_app, redis)
    job = job_of(redis, row)
    [queue] = [q for q in outbound_queues(redis, 3) if q.name == job.origin]
    if change.startswith("taken") and change != "taken, never started":
        taken, _ = Queue.dequeue_any([queue], timeout=None, connection=redis)  # as a worker does
        assert taken.id == job.id and job.id in queue.intermediate_queue.get_job_ids()
        if change.endswith("long ago"):  # first seen there (by rq or a relay) two minutes ago
            first_seen = queue.intermediate_queue.get_first_seen_key(job.id)
            redis.set(first_seen, (datetime.now(UTC) - timedelta(minutes=2)).timestamp())
    elif change != "waiting":
        queue.remove(job)
    status = {"started long ago": "started", "started now": "started"}.get(change, change)
    job.set_status(JobStatus.QUEUED if status.startswith(("taken", "waiting")) else status)
    if change.startswith("started"):
        job.started_at = datetime.now(UTC) - timedelta(hours=1 if change.endswith("ago") else 0)
        job.save()
    make_old(session)
    report = relay_once(rq_app, redis)
    assert report.swept == int(lost)
    session.expire_all()
    [now] = outbox(session)
    assert (now.status, now.generation) == (("queued", 2) if lost else ("queued", 1))


def test_a_row_replaced_too_often_is_given_up_and_kept(rq_app, redis, row, session, monkeypatch):
    monkeypatch.setattr(relay_module, "MAX_GENERATIONS", 1)
    relay_once(rq_app, redis)
    redis.flushdb()
    make_old(session)
    report = relay_once(rq_app, redis)
    assert (report.enqueued, report.given_up) == (0, 1)
    session.expire_all()
    [kept] = outbox(session)
    assert kept.status == "failed" and "given up" in kept.last_error
    assert session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)) == 1


def test_the_relay_command_reports_what_it_did(rq_app, redis, row):
    result = invoke(rq_app, "relay", "--once")
    assert result.exit_code == 0, (result.output, result.exception)
    assert result.output.strip() == (
        "0 tries reclaimed, 1 jobs enqueued, 0 lost jobs replaced, 0 rows given up"
    )


def test_the_relay_pool_is_left_as_it_was_found(rq_app, redis, row):
    """A full pass leaves no database connection checked out."""
    relay_once(rq_app, redis)
    assert db.engine(rq_app).pool.checkedout() == 0
