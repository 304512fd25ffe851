"""The relay against the real Redis (no worker): what it enqueues, re-enqueues and leaves alone."""

import pytest
import sqlalchemy as sa
from rq.job import Job
from rq.registry import ScheduledJobRegistry

from leadsvc.db import utcnow
from leadsvc.jobs import relay as relay_module
from leadsvc.jobs.models import OutboxMessage
from leadsvc.jobs.queue import outbound_queues
from leadsvc.jobs.relay import relay_once
from tests.factories import valid_signup
from tests.jobs.support import FAST, invoke, outbox


@pytest.fixture
def rq_app(make_app, redis, redis_url):
    return make_app(redis_url=redis_url, **FAST)


@pytest.fixture
def row(rq_app, session):
    assert rq_app.test_client().post("/api/v1/signups", json=valid_signup()).status_code == 202
    [row] = outbox(session)
    return row


def queued_ids(redis, rq_app) -> list[str]:
    queues = outbound_queues(redis, rq_app.config["LEADSVC_SETTINGS"].job_timeout)
    return [job_id for queue in queues for job_id in queue.job_ids]


def empty_queues(redis) -> None:
    redis.delete(*(queue.key for queue in outbound_queues(redis, 3)))


def test_the_signup_enqueued_its_row_and_the_relay_leaves_it_alone(rq_app, redis, row, session):
    assert queued_ids(redis, rq_app) == [f"outbox-{row.id}-1"]
    job = Job.fetch(f"outbox-{row.id}-1", connection=redis, serializer="json")
    assert (job.func_name, job.args, job.timeout) == ("leadsvc.jobs.tasks.deliver", [row.id], 3)
    assert (job.retries_left, job.retry_intervals) == (2, [1, 1])
    report = relay_once(rq_app, redis)
    assert (report.enqueued, report.reclaimed) == (0, 0)
    assert queued_ids(redis, rq_app) == [f"outbox-{row.id}-1"]


def test_a_lost_job_is_enqueued_again_under_the_same_id(rq_app, redis, row):
    redis.flushdb()  # Redis restarted without persistence
    assert relay_once(rq_app, redis).enqueued == 1
    assert queued_ids(redis, rq_app) == [f"outbox-{row.id}-1"]
    assert relay_once(rq_app, redis).enqueued == 0  # unique: enqueued once


def test_a_job_that_ended_without_settling_its_row_gets_a_new_generation(
    rq_app, redis, row, session
):
    redis.hset(Job.key_for(f"outbox-{row.id}-1"), "status", "failed")  # e.g. the database was down
    empty_queues(redis)
    assert relay_once(rq_app, redis).enqueued == 1
    assert queued_ids(redis, rq_app) == [f"outbox-{row.id}-2"]
    assert outbox(session)[0].generation == 2


def test_a_job_whose_worker_died_while_started_gets_a_new_generation(rq_app, redis, row, session):
    """SIGKILL leaves the job "started" in Redis until rq's own cleanup, minutes later."""
    key = Job.key_for(f"outbox-{row.id}-1")
    empty_queues(redis)
    redis.hset(key, mapping={"status": "started", "started_at": "2000-01-01T00:00:00.000000Z"})
    assert relay_once(rq_app, redis).enqueued == 1
    assert queued_ids(redis, rq_app) == [f"outbox-{row.id}-2"]
    assert outbox(session)[0].generation == 2
    # A job started just now is running, not lost: left alone.
    redis.hset(Job.key_for(f"outbox-{row.id}-2"), mapping={
        "status": "started", "started_at": utcnow().strftime("%Y-%m-%dT%H:%M:%S.%fZ")})  # fmt: skip
    empty_queues(redis)
    assert relay_once(rq_app, redis).enqueued == 0


def test_a_job_taken_by_a_worker_that_died_before_starting_it_gets_a_new_generation(
    rq_app, redis, row, session, monkeypatch
):
    """A worker SIGKILLed between taking the job off the queue and starting it leaves the job
    "queued" in rq's intermediate list, where rq's maintenance looks only every few minutes."""
    [queue] = [q for q in outbound_queues(redis, 3) if q.name == "outbound"]
    assert redis.lmove(queue.key, queue.intermediate_queue_key) == f"outbox-{row.id}-1".encode()
    assert relay_once(rq_app, redis).enqueued == 0  # first seen there: it may be starting now
    assert relay_once(rq_app, redis).enqueued == 0  # not there long enough yet
    monkeypatch.setattr(relay_module, "LOST_AFTER_SECONDS", 0)
    assert relay_once(rq_app, redis).enqueued == 1
    assert queued_ids(redis, rq_app) == [f"outbox-{row.id}-2"]
    assert outbox(session)[0].generation == 2
    assert redis.llen(queue.intermediate_queue_key) == 0


@pytest.mark.parametrize("status", ["queued", "scheduled"])
def test_a_job_held_in_no_queue_or_schedule_gets_a_new_generation(
    rq_app, redis, row, session, status
):
    """The job's record says it waits, but nothing holds it (its queue entry or schedule entry
    went with a dead worker or rq's cleanup): nothing would ever run it."""
    empty_queues(redis)
    redis.hset(Job.key_for(f"outbox-{row.id}-1"), "status", status)
    assert relay_once(rq_app, redis).enqueued == 1
    assert queued_ids(redis, rq_app) == [f"outbox-{row.id}-2"]
    assert outbox(session)[0].generation == 2


def test_a_scheduled_job_in_the_schedule_is_left_alone(rq_app, redis, row):
    job_id = f"outbox-{row.id}-1"
    empty_queues(redis)
    redis.hset(Job.key_for(job_id), "status", "scheduled")
    redis.zadd(ScheduledJobRegistry("outbound", connection=redis).key, {job_id: 4_000_000_000})
    assert relay_once(rq_app, redis).enqueued == 0
    assert queued_ids(redis, rq_app) == []


def test_a_row_re_enqueued_too_often_is_given_up_and_kept(rq_app, redis, row, session, monkeypatch):
    monkeypatch.setattr(relay_module, "MAX_GENERATIONS", 1)
    redis.hset(Job.key_for(f"outbox-{row.id}-1"), "status", "failed")
    report = relay_once(rq_app, redis)
    assert (report.enqueued, report.given_up) == (0, 1)
    [kept] = outbox(session)
    assert kept.status == "failed" and "given up" in kept.last_error
    assert session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)) == 1


def test_the_relay_command_reports_what_it_did(rq_app, redis, row):
    redis.flushdb()
    result = invoke(rq_app, "relay", "--once")
    assert result.exit_code == 0, (result.output, result.exception)
    assert result.output.strip() == "0 tries reclaimed, 1 jobs enqueued, 0 rows given up"
