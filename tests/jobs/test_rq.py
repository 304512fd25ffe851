"""The outbound jobs on rq: a real Redis, real `leadsvc worker` processes, a real SMTP server and
a real HTTP receiver. PostgreSQL only (the production pairing; the workers are separate
processes, and SQLite without Redis is covered by the in-process drainer's tests).
"""

import time

import pytest
import sqlalchemy as sa
from rq import Queue
from rq.registry import StartedJobRegistry

from leadsvc.dealers import routing
from leadsvc.jobs.queue import enqueue_batches, outbound_queues, redis_client
from leadsvc.jobs.relay import relay_once
from leadsvc.outbox.dispatch import Batch
from leadsvc.outbox.kinds import CHANNELS, EMAIL_CHANNEL
from leadsvc.outbox.messages import QueuedRow
from leadsvc.outbox.models import OutboxAttempt
from tests.conftest import wait_until
from tests.factories import valid_signup
from tests.jobs.support import (
    FAST,
    PrivateRedis,
    add_dealer,
    attempts,
    kill_tree,
    kinds_and_statuses,
    outbox,
    parts,
    start_worker,
    stop_worker,
    validate_adf,
    verify_signature,
    worker_env,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
]


@pytest.fixture(autouse=True)
def routes_reload_at_once(monkeypatch):
    monkeypatch.setattr(routing, "REFRESH_SECONDS", 0.0)


@pytest.fixture
def rq_app(make_app, smtp, redis, redis_url):
    return make_app(redis_url=redis_url, smtp_url=smtp.url, **FAST)


@pytest.fixture
def worker(database_url, smtp, redis, redis_url, tmp_path):
    """Starts `leadsvc worker` processes on the test database; all stopped at the end."""
    env = worker_env(database_url, tmp_path, REDIS_URL=redis_url, SMTP_URL=smtp.url)
    started = []

    def start():
        process = start_worker(env, tmp_path / "worker.log")
        started.append(process)
        return process

    yield start
    for process in started:
        stop_worker(process)
    for name in ("worker", "relay"):
        log = tmp_path / f"{name}.log"
        if log.exists():  # shown by pytest only when the test failed
            tail = "\n".join(log.read_text().splitlines()[-60:])
            print(f"--- {name} log (tail) ---\n{tail}")


@pytest.fixture
def relay_process(database_url, smtp, redis, redis_url, tmp_path):
    """`leadsvc relay` on the test database, stopped at the end."""
    env = worker_env(database_url, tmp_path, REDIS_URL=redis_url, SMTP_URL=smtp.url)
    process = start_worker(env, tmp_path / "relay.log", "relay", "--interval", "1")
    yield process
    stop_worker(process)


def sign_up(app, **fields):
    reply = app.test_client().post("/api/v1/signups", json=valid_signup(**fields))
    assert reply.status_code == 202, reply.get_json()


def all_sent(session):
    rows = outbox(session)
    return rows and all(row.status == "sent" for row in rows)


def rq_is_idle(redis) -> bool:
    queues = [Queue(name, connection=redis) for name in CHANNELS]
    return all(q.count == 0 and StartedJobRegistry(queue=q).count == 0 for q in queues)


def relay(app):
    return relay_once(app, redis_client(app.config["LEADSVC_SETTINGS"].redis_url))


def test_a_signup_is_delivered_by_the_worker(
    rq_app, session, smtp, webhook_receiver, worker, relay_process
):
    add_dealer(session, webhook_url=webhook_receiver.url)
    worker()
    sign_up(rq_app, interests=["Countryman"])
    messages = smtp.wait_for(2, timeout=45)
    [request] = webhook_receiver.wait_for(1)
    wait_until(lambda: all_sent(session), 10, "every outbox row sent")

    [welcome] = [m for m in messages if m["To"] == "jane.doe@example.com"]
    assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert welcome["List-Unsubscribe"].strip().startswith("<https://stay.example.com/unsubscribe/")
    assert welcome["List-Id"].endswith("<stay-in-the-loop.newsletter.example.com>")
    assert set(parts(welcome)) == {"text/plain", "text/html"}
    [notice] = [m for m in messages if "leads-ny1@example.com" in m["To"]]
    adf = validate_adf(notice.get_content().replace("\r\n", "\n"))
    assert adf.findtext("prospect/vehicle/model") == "Countryman"
    assert verify_signature(request)

    runners = dict(session.execute(sa.select(OutboxAttempt.outbox_id, OutboxAttempt.runner)).all())
    rows = outbox(session)
    assert runners == {row.id: row.job_id for row in rows}  # the rq job that held each row
    hook = next(row for row in rows if row.kind == "dealer_webhook")
    emails = [row for row in rows if row.kind != "dealer_webhook"]
    assert runners[hook.id] == f"outbox-{hook.id}-1"  # webhooks: a job of their own channel
    assert {runners[row.id] for row in emails} == {f"outbox-{emails[0].id}-1"}  # one batch
    for row in outbox(session):
        assert attempts(session, row.id) == [(1, "sent")]


def test_webhooks_are_taken_before_the_emails_queued_ahead_of_them(
    rq_app, session, smtp, webhook_receiver, worker, redis
):
    add_dealer(session, webhook_url=webhook_receiver.url)
    for n in range(3):  # a backlog: nine jobs, the emails of each signup queued first
        sign_up(rq_app, email=f"backlog-{n}@example.com")
    assert relay(rq_app).enqueued == 9
    # One job per channel: the three webhooks in one, the six emails in another.
    assert [Queue(name, connection=redis).count for name in CHANNELS] == [1, 1]
    worker()
    webhook_receiver.wait_for(3)
    smtp.wait_for(6, timeout=45)
    wait_until(lambda: all_sent(session), 10, "every outbox row sent")
    rows = outbox(session)
    hooks = [row.sent_at for row in rows if row.kind == "dealer_webhook"]
    emails = [row.sent_at for row in rows if row.kind != "dealer_webhook"]
    assert len(hooks) == 3 and len(emails) == 6
    assert max(hooks) <= min(emails)


def test_a_failing_webhook_is_retried_by_the_outbox_at_its_intervals(
    rq_app, session, webhook_receiver, worker, relay_process
):
    add_dealer(session, webhook_url=webhook_receiver.url)
    webhook_receiver.statuses = [500, 503]
    worker()
    sign_up(rq_app)
    requests = webhook_receiver.wait_for(3, timeout=45)
    wait_until(lambda: all_sent(session), 10, "every outbox row sent")
    [hook] = [row for row in outbox(session) if row.kind == "dealer_webhook"]
    assert attempts(session, hook.id) == [(1, "failed"), (2, "failed"), (3, "sent")]
    assert {r["headers"]["X-Leadsvc-Delivery"] for r in requests} == {f"outbox-{hook.id}"}
    assert all(verify_signature(r) for r in requests)


@pytest.fixture
def own_redis(tmp_path):
    """A Redis of this test's own, which it stops and starts (the machine's serves others)."""
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def test_signups_while_redis_is_down_are_delivered_once_when_it_is_back(
    make_app, database_url, session, smtp, own_redis, tmp_path
):
    app = make_app(redis_url=own_redis.url, smtp_url=smtp.url, **FAST)
    env = worker_env(database_url, tmp_path, REDIS_URL=own_redis.url, SMTP_URL=smtp.url)
    add_dealer(session)
    process = start_worker(env, tmp_path / "worker.log")
    try:
        own_redis.stop()
        try:
            for n in range(3):
                started = time.monotonic()
                sign_up(app, email=f"person{n}@example.com")
                assert time.monotonic() - started < 1  # the request path does not touch Redis
            assert (
                kinds_and_statuses(session)
                == [("welcome_email", "pending"), ("dealer_email", "pending")] * 3
            )
        finally:
            own_redis.start()
        report = relay(app)
        assert (report.enqueued, report.reclaimed) == (6, 0)
        messages = smtp.wait_for(6, timeout=45)
        redis = redis_client(own_redis.url)
        wait_until(lambda: all_sent(session) and rq_is_idle(redis), 10, "the jobs to finish")
        assert relay(app).enqueued == 0
    finally:
        stop_worker(process)
    assert sorted(m["To"] for m in messages if "person" in m["To"]) == [
        f"person{n}@example.com" for n in range(3)
    ]
    assert len(smtp.received) == 6  # every job delivered, once
    for row in outbox(session):
        assert attempts(session, row.id) == [(1, "sent")]


def test_a_worker_killed_before_the_hand_off_completes_after_the_relay(
    rq_app, session, smtp, worker
):
    stall = smtp.stall("rcpt")  # the mail server hangs in the middle of the conversation
    first = worker()
    sign_up(rq_app)
    assert relay(rq_app).enqueued == 1
    assert stall.reached.wait(20)
    kill_tree(first)  # the worker and its work horse die mid-job
    stall.release()
    [row] = outbox(session)
    assert (row.status, row.attempts) == ("sending", 1)

    worker()
    assert relay(rq_app).reclaimed == 0  # the try's lease has not run out yet
    wait_until(lambda: relay(rq_app).reclaimed, 10, "the relay to reclaim the lost try", 0.25)
    smtp.wait_for(1)
    wait_until(lambda: all_sent(session), 10, "the row to be sent")
    assert attempts(session, row.id) == [(1, "interrupted"), (2, "sent")]
    assert len(smtp.received) == 1


def test_a_worker_killed_after_the_hand_off_never_sends_twice(rq_app, session, smtp, worker, redis):
    stall = smtp.stall("data")  # the server has the message but has not answered yet
    first = worker()
    sign_up(rq_app)
    assert relay(rq_app).enqueued == 1
    assert stall.reached.wait(20)
    kill_tree(first)
    stall.release()
    [row] = outbox(session)
    assert row.status == "handed_off"

    worker()
    assert relay(rq_app).reclaimed == 0  # the try's lease has not run out yet
    wait_until(lambda: relay(rq_app).reclaimed, 10, "the relay to settle the lost try", 0.25)
    assert relay(rq_app).enqueued == 0
    [row] = outbox(session)
    assert row.status == "unknown" and "may have arrived" in row.last_error
    assert attempts(session, row.id) == [(1, "unknown")]
    assert Queue(EMAIL_CHANNEL, connection=redis).count == 0  # nothing queued to send it again
    time.sleep(1.5)  # longer than a retry interval: a resend would have arrived by now
    assert len(smtp.received) == 1
    assert kinds_and_statuses(session) == [("welcome_email", "unknown")]


def test_duplicate_jobs_for_one_row_send_once(rq_app, session, smtp, worker, redis):
    sign_up(rq_app)
    assert relay(rq_app).enqueued == 1
    [row] = outbox(session)
    settings = rq_app.config["LEADSVC_SETTINGS"]
    queues = outbound_queues(redis, settings.job_timeout)
    second = QueuedRow(row.id, row.kind, 7)
    enqueue_batches(queues, [Batch(second.job_id, "outbound", (second,))], settings)
    assert Queue(EMAIL_CHANNEL, connection=redis).count == 2
    worker()  # started once both jobs are queued
    smtp.wait_for(1)
    wait_until(
        lambda: rq_is_idle(redis) and len(attempts(session, row.id)) == 2, 15, "both jobs to run"
    )
    assert sorted(attempts(session, row.id), key=str) == [(1, "sent"), (None, "duplicate")]
    assert len(smtp.received) == 1
