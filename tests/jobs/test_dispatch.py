"""The request path's hand-off to Redis: its wait is bounded (a hung Redis costs a signup half a
second once), and a Redis that lost rq's enqueue script gets it again."""

import socket
import threading
import time
from datetime import UTC, datetime

import pytest
from rq import Queue

from leadsvc.jobs.outbox import QueuedRow
from leadsvc.jobs.queue import EMAIL_QUEUE, enqueue, outbound_queues
from tests.factories import valid_signup
from tests.jobs.support import FAST, kinds_and_statuses, outbox


@pytest.fixture
def hung_redis():
    """A server that accepts connections and never answers (a Redis stuck or black-holed)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held, stop = [], threading.Event()

    def accept():
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    stop.set()
    thread.join(5)
    for connection in held:
        connection.close()
    server.close()


def test_a_hung_redis_delays_a_signup_by_a_bounded_time_and_the_rows_wait(
    make_app, session, hung_redis, caplog
):
    app = make_app(redis_url=hung_redis, **FAST)
    client = app.test_client()
    started = time.monotonic()
    assert client.post("/api/v1/signups", json=valid_signup()).status_code == 202
    first = time.monotonic() - started
    assert 0.4 < first < 2  # it waited for Redis, but only the 0.5 s socket timeout
    started = time.monotonic()
    second = client.post("/api/v1/signups", json=valid_signup(email="b@example.com"))
    assert second.status_code == 202
    assert time.monotonic() - started < 0.4  # Redis is skipped for a while after it failed
    assert kinds_and_statuses(session) == [("welcome_email", "pending")] * 2  # for the relay
    warnings = [r.getMessage() for r in caplog.records if r.name == "leadsvc.jobs.dispatch"]
    assert warnings[0] == "redis unavailable (TimeoutError): 1 outbox rows left for the relay"
    assert "@" not in " ".join(warnings)


def test_jobs_are_enqueued_once_after_redis_forgot_the_enqueue_script(make_app, session, redis,
                                                                       redis_url):  # fmt: skip
    """The enqueue script is called by its SHA; a Redis without it (restarted, SCRIPT FLUSH) gets
    it loaded and the pipeline sent again, and a repeat of a row still finds its job."""
    app = make_app(redis_url=redis_url, **FAST)
    client = app.test_client()
    redis.script_flush()
    assert client.post("/api/v1/signups", json=valid_signup()).status_code == 202
    queue = Queue(EMAIL_QUEUE, connection=redis)
    [row] = outbox(session)
    assert queue.job_ids == [f"outbox-{row.id}-1"]
    redis.script_flush()
    settings = app.config["LEADSVC_SETTINGS"]
    queues = outbound_queues(redis, settings.job_timeout)
    assert enqueue(queues, QueuedRow(row.id, row.kind, 1), settings) is False  # already there
    assert queue.job_ids == [f"outbox-{row.id}-1"]
    assert kinds_and_statuses(session) == [("welcome_email", "pending")]


@pytest.mark.parametrize("kind", ["welcome_email", "dealer_webhook"])
def test_a_job_hash_is_the_one_rq_makes_for_the_row(redis, kind):
    """enqueue_many writes rq's own job hash for a sample row with the row's call, description
    and time: the same fields and values rq writes for the row itself (but for the time)."""
    from leadsvc.jobs.queue import _rq_job_args, job_hash, queue_name

    [queue] = [q for q in outbound_queues(redis, 7) if q.name == queue_name(kind)]
    row = QueuedRow(8123, kind, 3)
    ours = job_hash(queue, row, 7, (1, 5))
    theirs = _rq_job_args(queue, row, 7, (1, 5))
    stamps = {"created_at", "enqueued_at"}

    def pairs(fields):
        return [(k, v) for k, v in zip(fields[::2], fields[1::2], strict=True) if k not in stamps]

    assert pairs(ours) == pairs(theirs)
    assert set(ours[::2]) >= stamps | {"data", "description", "origin", "timeout", "status"}


@pytest.mark.parametrize("kind", ["welcome_email", "dealer_webhook"])
@pytest.mark.parametrize("outbox_id", [1, 8123, 2**40 + 7])
def test_a_packed_enqueue_is_what_hiredis_packs_for_the_job(redis, kind, outbox_id):
    """The enqueue command, packed from a template made once, is byte for byte the one hiredis
    packs from the whole argument list (rq's script by SHA, the job's keys, its job hash)."""
    import hiredis

    from leadsvc.jobs.queue import _enqueue_args, job_hash, packed_enqueue, queue_name

    [queue] = [q for q in outbound_queues(redis, 7) if q.name == queue_name(kind)]
    row = QueuedRow(outbox_id, kind, 2)
    stamp = "2026-11-24T12:00:00.000001Z"
    args = _enqueue_args(queue, "f" * 40, queue.job_class.key_for(row.job_id), row.job_id,
                         job_hash(queue, row, 7, (1, 5), stamp))  # fmt: skip
    assert packed_enqueue(queue, row, 7, (1, 5), "f" * 40, stamp) == hiredis.pack_command(args)


@pytest.mark.parametrize(
    "moment",
    [datetime(2026, 11, 24, 12, 0, 0, 0, tzinfo=UTC), datetime(1999, 1, 2, 3, 4, 5, 67, tzinfo=UTC),
     datetime(2030, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)],
)  # fmt: skip
def test_job_timestamps_are_written_as_rq_writes_them(moment):
    from rq.utils import utcformat

    from leadsvc.jobs.queue import timestamp

    assert timestamp(moment) == utcformat(moment)


def thread_link(app):
    """The request path's Redis connection of this thread (the test client runs requests here)."""
    from leadsvc.jobs.dispatch import DISPATCHER_KEY

    return app.extensions[DISPATCHER_KEY].connection.local.connection


def test_each_thread_keeps_one_connection_and_replaces_one_redis_closed(
    make_app, session, redis, redis_url, caplog
):
    """The request path's connection is the thread's own, used signup after signup; one the server
    closed (here CLIENT KILL; a Redis restart alike) is noticed before use and opened again, and
    the signup's jobs go in without a warning."""
    app = make_app(redis_url=redis_url, **FAST)
    client = app.test_client()
    queue = Queue(EMAIL_QUEUE, connection=redis)
    assert client.post("/api/v1/signups", json=valid_signup()).status_code == 202
    link = thread_link(app)
    port = link._sock.getsockname()[1]
    second = valid_signup(email="second@example.com")
    assert client.post("/api/v1/signups", json=second).status_code == 202
    assert thread_link(app) is link and link._sock.getsockname()[1] == port  # reused
    assert redis.client_kill_filter(_type="normal", skipme=True) >= 1
    third = valid_signup(email="third@example.com")
    assert client.post("/api/v1/signups", json=third).status_code == 202
    assert link._sock.getsockname()[1] != port  # a new connection
    assert queue.job_ids == [f"outbox-{row.id}-1" for row in outbox(session)]
    assert len(queue.job_ids) == 3
    assert not [r for r in caplog.records if r.name == "leadsvc.jobs.dispatch"]


def test_an_error_reply_is_raised_and_the_connection_stays_in_step(make_app, redis, redis_url):
    """An error for one job of a pipeline is raised after every reply is read, so the next
    exchange on the same connection reads its own replies (here: a repeat is seen as one)."""
    from redis.exceptions import ResponseError

    from leadsvc.jobs.dispatch import DISPATCHER_KEY
    from leadsvc.jobs.queue import WEBHOOK_QUEUE, enqueue_many

    app = make_app(redis_url=redis_url, **FAST)
    dispatcher = app.extensions[DISPATCHER_KEY]
    settings = app.config["LEADSVC_SETTINGS"]
    email_key = Queue(EMAIL_QUEUE, connection=redis).key
    redis.set(email_key, "not a list")  # the email job's RPUSH fails inside the script
    email, webhook = QueuedRow(901, "welcome_email", 1), QueuedRow(902, "dealer_webhook", 1)
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        enqueue_many(dispatcher.queues, [email, webhook], settings, dispatcher.connection)
    link = thread_link(app)
    port = link._sock.getsockname()[1]
    redis.delete(email_key)
    assert enqueue_many(dispatcher.queues, [webhook], settings, dispatcher.connection) == [False]
    assert link._sock.getsockname()[1] == port  # the same connection, still in step
    assert Queue(WEBHOOK_QUEUE, connection=redis).job_ids == ["outbox-902-1"]
