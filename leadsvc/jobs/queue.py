"""rq plumbing: Redis connections, the outbound queues, and enqueueing one outbox row.

Every job is `leadsvc.jobs.tasks.deliver(outbox_id)` with the JSON serializer, an explicit
timeout, `Retry` with growing intervals, and `unique=True` on the job id
`outbox-<id>-<generation>`, so enqueueing the same row twice (the request and the relay racing)
leaves one job.

There is one queue per channel, and workers take from `webhooks` before `outbound` (emails): a
dealer's webhook is a quick call that puts the lead in the dealer's system within a second, while
emails wait on an SMTP server that may be slow or refusing for a while. Under a burst the emails
queue up behind the webhooks instead of the other way round.
"""

from __future__ import annotations

import functools
import os
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import hiredis
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry as RedisRetry
from rq import Queue, Retry
from rq.scripts import _build_hset_args, get_unique_enqueue_script
from rq.serializers import JSONSerializer
from rq.utils import now, utcformat

from leadsvc.jobs.outbox import QueuedRow

#: Queue names in the order workers take from them.
WEBHOOK_QUEUE = "webhooks"
EMAIL_QUEUE = "outbound"
QUEUE_NAMES = (WEBHOOK_QUEUE, EMAIL_QUEUE)
JOB_FUNCTION = "leadsvc.jobs.tasks.deliver"
#: The request path waits at most this long for Redis (connect, then each reply).
REQUEST_CONNECT_TIMEOUT = 0.25
REQUEST_SOCKET_TIMEOUT = 0.5
#: Failed jobs stay inspectable in rq this long; the outbox keeps its own record regardless.
FAILURE_TTL = 7 * 86_400
#: A job that succeeded is deleted at once (result_ttl=0): its outcome is in the outbox and
#: its attempts, and keeping rq's copy cost every job more Redis writes.
RESULT_TTL = 0


def request_redis(url: str) -> redis.Redis:
    """A client for the request path: short timeouts and no retries (the relay is the retry)."""
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=REQUEST_CONNECT_TIMEOUT,
        socket_timeout=REQUEST_SOCKET_TIMEOUT,
        retry=RedisRetry(NoBackoff(), 0),
        health_check_interval=30,
    )


def worker_redis(url: str) -> redis.Redis:
    """A client for the worker and the relay, which may wait for Redis."""
    return redis.Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)


def outbound_queues(connection: redis.Redis, job_timeout: int) -> list[Queue]:
    """The queues, in the order workers take from them."""
    return [
        Queue(name, connection=connection, serializer=JSONSerializer, default_timeout=job_timeout)
        for name in QUEUE_NAMES
    ]


def queue_name(kind: str) -> str:
    return WEBHOOK_QUEUE if kind.endswith("_webhook") else EMAIL_QUEUE


def enqueue(queues: list[Queue], row: QueuedRow, settings) -> bool:
    """Put one outbox row on rq; False if a job with its id already exists (nothing to do)."""
    return enqueue_many(queues, [row], settings)[0]


#: rq job-hash fields that differ between two outbox rows of one queue.
_PER_JOB_FIELDS = ("created_at", "enqueued_at", "data", "description")


@functools.cache
def _job_hash_template(queue: Queue, timeout: int, intervals: tuple[int, ...]) -> tuple[list, dict]:
    """rq's job hash (`HSET` field/value list) for a job of `queue`, made once by rq itself for a
    sample row, and where in it the per-job fields sit. Making the job with rq for every row cost
    about 35 us of Python per job, most of a signup's enqueue."""
    sample = _rq_job_args(queue, QueuedRow(0, "sample", 1), timeout, intervals)
    where = {sample[n]: n + 1 for n in range(0, len(sample), 2) if sample[n] in _PER_JOB_FIELDS}
    if set(where) != set(_PER_JOB_FIELDS):
        raise RuntimeError(f"rq's job hash has changed: {sorted(where)}")
    return sample, where


def _rq_job_args(queue: Queue, row: QueuedRow, timeout: int, intervals: tuple[int, ...]) -> list:
    """The job hash as rq builds it for `row` (what `Queue.enqueue(..., unique=True)` writes)."""
    job = queue.create_job(
        JOB_FUNCTION, args=[row.id], job_id=row.job_id, timeout=timeout,
        retry=Retry(max=len(intervals), interval=list(intervals)), failure_ttl=FAILURE_TTL,
        result_ttl=RESULT_TTL, description=_description(row),
    )  # fmt: skip
    queue._prepare_for_queue(job)
    return _build_hset_args(job)


def _description(row: QueuedRow) -> str:
    return f"deliver outbox {row.id} ({row.kind})"


def job_hash(queue: Queue, row: QueuedRow, timeout: int, intervals: tuple[int, ...]) -> list:
    """The job hash of `row`: rq's own for a sample row, with this row's call, description and
    time (tests compare it with what rq makes for the row)."""
    template, where = _job_hash_template(queue, timeout, intervals)
    fields = list(template)
    fields[where["created_at"]] = fields[where["enqueued_at"]] = utcformat(now())
    call = (JOB_FUNCTION, None, [row.id], {})
    fields[where["data"]] = zlib.compress(queue.serializer.dumps(call))
    fields[where["description"]] = _description(row)
    return fields


class PooledConnection:
    """A connection from the client's pool for each exchange (the relay, the CLI, tests)."""

    def __init__(self, client: redis.Redis):
        self.pool = client.connection_pool

    @contextmanager
    def __call__(self) -> Iterator[redis.Connection]:
        connection = self.pool.get_connection()
        try:
            yield connection
        except BaseException:
            connection.disconnect()  # a reply may be half read: never reuse it
            raise
        finally:
            self.pool.release(connection)


class ThreadConnection:
    """Each thread's own connection, outside redis-py's pool: the request path's.

    Under gunicorn's threads the pool's checkout and return (a lock, a readiness poll, its
    observability counters) cost the signup more than the enqueue itself: at 8 connections,
    signups/s rose by about 15% without it (single runs: 900-980 -> 960-1,080). A connection found
    readable before use (the server closed it, or stray bytes) is dropped and opened again, as
    the pool does.
    """

    def __init__(self, client: redis.Redis):
        pool = client.connection_pool
        self.connection_class = pool.connection_class
        self.connection_kwargs = pool.connection_kwargs
        self.local = threading.local()

    @contextmanager
    def __call__(self) -> Iterator[redis.Connection]:
        connection = getattr(self.local, "connection", None)
        if connection is None or connection.pid != os.getpid():  # new thread, or a forked child
            connection = self.local.connection = self.connection_class(**self.connection_kwargs)
        else:
            try:
                if connection.can_read():
                    connection.disconnect()
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
                connection.disconnect()
        try:
            yield connection
        except BaseException:
            connection.disconnect()  # a reply may be half read: never reuse it
            raise


def _exchange(connection: redis.Connection, packed: bytes, count: int) -> list:
    """Send pipelined commands and read all `count` replies; an error reply is kept in its
    place (reading on keeps the connection in step)."""
    connection.send_packed_command([packed])
    replies = []
    for _ in range(count):
        try:
            replies.append(connection.read_response())
        except redis.exceptions.ResponseError as error:
            replies.append(error)
    return replies


def enqueue_many(
    queues: list[Queue],
    rows: list[QueuedRow],
    settings,
    connection: PooledConnection | ThreadConnection | None = None,
) -> list[bool]:
    """Put outbox rows on rq in one Redis round trip; per row, False if its job already existed.

    Each job goes in with rq's own atomic unique-enqueue script (what `Queue.enqueue(...,
    unique=True)` runs, one round trip per job), all of them pipelined on one connection (from
    the pool unless `connection` says otherwise). The script is called by its SHA; it is loaded
    only when Redis says it does not have it (first use, or Redis restarted), and the commands
    sent again (nothing in them ran but the SADD).
    """
    by_name = {queue.name: queue for queue in queues}
    intervals = tuple(settings.job_retry_intervals)
    client = queues[0].connection
    script = get_unique_enqueue_script(client)
    commands = []
    for row in rows:
        queue = by_name[queue_name(row.kind)]
        fields = job_hash(queue, row, settings.job_timeout, intervals)
        commands.append(hiredis.pack_command(
            ("EVALSHA", script.sha, 2, queue.job_class.key_for(row.job_id), queue.key, row.job_id,
             "R", -1, *fields)
        ))  # fmt: skip
    queue_keys = sorted({by_name[queue_name(row.kind)].key for row in rows})
    packed = hiredis.pack_command(("SADD", Queue.redis_queues_keys, *queue_keys))
    packed += b"".join(commands)
    with (connection or PooledConnection(client))() as link:
        replies = _exchange(link, packed, len(commands) + 1)
        if any(isinstance(reply, redis.exceptions.NoScriptError) for reply in replies):
            [loaded] = _exchange(link, hiredis.pack_command(("SCRIPT", "LOAD", script.script)), 1)
            if isinstance(loaded, Exception):
                raise loaded
            replies = _exchange(link, packed, len(commands) + 1)
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return [reply != 0 for reply in replies[1:]]
