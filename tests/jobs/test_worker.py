"""`AppWorker`, rq's `SimpleWorker` with its bookkeeping trimmed: it leaves Redis exactly as rq's
own worker does, in far fewer round trips, and its key keeps its full time to live between jobs.
Real Redis, PostgreSQL, SMTP server and webhook receiver; the workers run in this process.
"""

import re

import pytest
import redis as redis_library
from rq import SimpleWorker
from rq.serializers import JSONSerializer
from rq.suspension import resume, suspend

from leadsvc.jobs.queue import outbound_queues
from leadsvc.jobs.worker import AppWorker
from tests.factories import valid_signup
from tests.jobs.support import FAST, add_dealer, outbox

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


class CountingConnection(redis_library.Connection):
    """Counts what goes to Redis: one send per command, or per pipeline."""

    sent = 0

    def send_packed_command(self, command, check_health=True):
        CountingConnection.sent += 1
        return super().send_packed_command(command, check_health)


@pytest.fixture
def rq_app(make_app, smtp, redis, redis_url):
    return make_app(redis_url=redis_url, smtp_url=smtp.url, **FAST)


@pytest.fixture
def counted(redis_url):
    client = redis_library.Redis.from_url(redis_url, connection_class=CountingConnection)
    yield client
    client.close()


def make_worker(worker_class, app, connection):
    queues = outbound_queues(connection, app.config["LEADSVC_SETTINGS"].job_timeout)
    extra = {"app": app} if worker_class is AppWorker else {}
    return worker_class(queues, connection=connection, serializer=JSONSerializer, **extra)


def run_burst(worker_class, app, connection) -> int:
    """Runs the queued jobs with a worker of `worker_class`; returns the Redis sends it made."""
    worker = make_worker(worker_class, app, connection)
    CountingConnection.sent = 0
    with app.app_context():  # rq's own worker does not enter it by itself
        worker.work(burst=True, logging_level="WARNING")
    return CountingConnection.sent


def sign_up(app, n: int) -> None:
    reply = app.test_client().post("/api/v1/signups", json=valid_signup(email=f"w{n}@example.com"))
    assert reply.status_code == 202, reply.get_json()


def redis_state(client) -> dict:
    """Every key with its type and contents, worker names and job ids replaced by placeholders
    (timestamps, durations and the client's port by their kind), so that two runs compare."""
    names = {}

    def plain(value) -> str:
        try:
            text = value.decode() if isinstance(value, bytes) else str(value)
        except UnicodeDecodeError:  # a compressed traceback
            return "<binary>"
        for found in re.findall(r"[0-9a-f]{32}", text):
            names.setdefault(found, f"<id{len(names)}>")
            text = text.replace(found, names[found])
        text = re.sub(r"outbox-\d+-\d+", "<job>", text)
        text = re.sub(r"outbox \d+", "outbox <row>", text)
        text = re.sub(r"\d{4}-\d\d-\d\dT[\d:.]+Z", "<time>", text)
        text = re.sub(r"^127\.0\.0\.1:\d+$", "<client address>", text)
        return re.sub(r"^\d+\.\d+$", "<number>", text)

    state = {}
    for key in sorted(client.keys("rq:*")):
        kind = client.type(key).decode()
        if kind == "hash":
            value = {plain(f): plain(v) for f, v in client.hgetall(key).items()}
        elif kind == "set":
            value = sorted(plain(m) for m in client.smembers(key))
        elif kind == "zset":
            value = sorted(plain(m) for m in client.zrange(key, 0, -1))
        elif kind == "list":
            value = [plain(m) for m in client.lrange(key, 0, -1)]
        else:
            value = kind
        state[plain(key)] = (value, client.ttl(key) > 0)
    return state


@pytest.mark.parametrize("webhook_status", [200, 500], ids=["delivered", "webhook-failed"])
def test_it_leaves_redis_as_rqs_own_worker_does(
    rq_app, session, smtp, webhook_receiver, redis, counted, webhook_status
):
    add_dealer(session, webhook_url=webhook_receiver.url)
    states = {}
    for n, worker_class in enumerate((SimpleWorker, AppWorker)):
        redis.flushdb()
        webhook_receiver.statuses[:] = [webhook_status]
        sign_up(rq_app, n)
        run_burst(worker_class, rq_app, counted)
        states[worker_class] = redis_state(redis)

    assert states[AppWorker] == states[SimpleWorker]
    statuses = sorted((row.kind, row.status) for row in outbox(session))
    expected_hook = "sent" if webhook_status == 200 else "pending"  # rq schedules the retry
    assert statuses == sorted(2 * [("dealer_email", "sent"), ("dealer_webhook", expected_hook),
                                   ("welcome_email", "sent")])  # fmt: skip
    jobs_left = {key for key in states[AppWorker] if key.startswith("rq:job:")}
    assert jobs_left == (set() if webhook_status == 200 else {"rq:job:<job>"})


def test_a_job_costs_a_fraction_of_rqs_round_trips(rq_app, session, smtp, redis, counted):
    add_dealer(session)
    per_job = {}
    for worker_class in (SimpleWorker, AppWorker):
        sends = []
        for signups in (1, 4):  # the difference is what the 6 more jobs cost
            redis.flushdb()
            for n in range(signups):
                sign_up(rq_app, len(outbox(session)) + n)
            sends.append(run_burst(worker_class, rq_app, counted))
        per_job[worker_class] = (sends[1] - sends[0]) / 6
    # dequeue (one pop per queue looked at, then the job), start (1), finish (1); the worker key
    # and the suspension flag at most once a second
    assert per_job[AppWorker] <= 7
    assert per_job[AppWorker] < per_job[SimpleWorker] / 3  # rq's worker: about 26


def test_the_worker_key_gets_its_full_time_to_live_back_after_a_job(
    rq_app, session, smtp, redis, counted
):
    add_dealer(session)
    sign_up(rq_app, 0)
    worker = make_worker(AppWorker, rq_app, counted)
    worker.register_birth()
    full = worker.worker_ttl + 60
    job, queue = worker.dequeue_job_and_maintain_ttl(timeout=None)
    worker.execute_job(job, queue)
    assert redis.ttl(worker.key) <= FAST["job_timeout"] + 60  # rq shortened it for the job

    CountingConnection.sent = 0
    worker.heartbeat()
    assert CountingConnection.sent == 1  # one pipeline
    assert redis.ttl(worker.key) > full - 5
    worker.heartbeat()
    worker.set_state(worker.get_state())
    assert CountingConnection.sent == 1  # nothing new to say within a second

    worker.heartbeat(30)  # a shorter one, as rq sends during a job: the next full one goes out
    worker.heartbeat()
    assert redis.ttl(worker.key) > full - 5
    assert redis.hget(worker.key, "state") == b"idle"
    worker.register_death()


def test_a_suspended_worker_still_stops(rq_app, session, smtp, redis, counted):
    add_dealer(session)
    sign_up(rq_app, 0)
    suspend(counted)
    assert run_burst(AppWorker, rq_app, counted) > 0
    assert [row.status for row in outbox(session)] == ["pending"] * 2  # nothing was taken
    resume(counted)
    run_burst(AppWorker, rq_app, counted)
    assert [row.status for row in outbox(session)] == ["sent"] * 2
