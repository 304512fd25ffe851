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
from datetime import datetime

import hiredis
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry as RedisRetry
from rq import Queue, Retry
from rq.scripts import _build_hset_args, get_unique_enqueue_script
from rq.serializers import JSONSerializer
from rq.utils import now

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


@functools.cache
def _call_around_id(serializer) -> tuple[bytes, bytes]:
    """The serialized call `deliver(<id>)` before and after the id, as `serializer` writes it."""
    head, tail = serializer.dumps((JOB_FUNCTION, None, [0], {})).split(b"[0]")
    return head + b"[", b"]" + tail


def _job_data(queue: Queue, row: QueuedRow) -> bytes:
    head, tail = _call_around_id(queue.serializer)
    return zlib.compress(b"%s%d%s" % (head, row.id, tail))


def timestamp(moment: datetime) -> str:
    """`rq.utils.utcformat(moment)` for a UTC time (isoformat costs a third of its strftime)."""
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def job_hash(
    queue: Queue, row: QueuedRow, timeout: int, intervals: tuple[int, ...],
    stamp: str | None = None,
) -> list:  # fmt: skip
    """The job hash of `row`: rq's own for a sample row, with this row's call, description and
    time (`stamp`, default now; tests compare it with what rq makes for the row)."""
    template, where = _job_hash_template(queue, timeout, intervals)
    fields = list(template)
    fields[where["created_at"]] = fields[where["enqueued_at"]] = stamp or timestamp(now())
    fields[where["data"]] = _job_data(queue, row)
    fields[where["description"]] = _description(row)
    return fields


def _bulk(value) -> bytes:
    """One command argument in RESP (`$<length>\\r\\n<bytes>\\r\\n`), encoded as hiredis does."""
    return hiredis.pack_command((value,)).removeprefix(b"*1\r\n")


def _bulk_bytes(data: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(data), data)


def _enqueue_args(queue: Queue, sha: str, job_key, job_id, fields: list) -> tuple:
    """rq's unique-enqueue script called for one job: `EVALSHA` with its keys and job hash."""
    return ("EVALSHA", sha, 2, job_key, queue.key, job_id, "R", -1, *fields)


@functools.cache
def _packed_enqueue_template(
    queue: Queue, timeout: int, intervals: tuple[int, ...], sha: str
) -> tuple[bytes | str, ...]:
    """`_enqueue_args` for a job of `queue` packed once: the constant parts as RESP bytes, and
    where a job's own values go, by name. Packing the whole command per job (45 arguments, most
    of them the same for every job) cost more than the rest of the enqueue."""
    fields, where = _job_hash_template(queue, timeout, intervals)
    fields = list(fields)
    for name, position in where.items():
        fields[position] = name
    args = _enqueue_args(queue, sha, "job_key", "job_id", fields)
    slots = {3, 5} | {8 + position for position in where.values()}
    pieces: list[bytes | str] = [b"*%d\r\n" % len(args)]
    for n, arg in enumerate(args):
        if n in slots:
            pieces.append(arg)
        elif isinstance(pieces[-1], bytes):
            pieces[-1] += _bulk(arg)
        else:
            pieces.append(_bulk(arg))
    return tuple(pieces)


def packed_enqueue(
    queue: Queue, row: QueuedRow, timeout: int, intervals: tuple[int, ...], sha: str, stamp: str
) -> bytes:
    """The packed `EVALSHA` that enqueues `row` (byte for byte what hiredis packs for
    `_enqueue_args` with `job_hash`; a test compares them)."""
    stamp_bulk = _bulk_bytes(stamp.encode())
    values = {
        "job_key": _bulk_bytes(queue.job_class.key_for(row.job_id).encode()),
        "job_id": _bulk_bytes(row.job_id.encode()),
        "created_at": stamp_bulk,
        "enqueued_at": stamp_bulk,
        "data": _bulk_bytes(_job_data(queue, row)),
        "description": _bulk_bytes(_description(row).encode()),
    }
    pieces = _packed_enqueue_template(queue, timeout, intervals, sha)
    return b"".join(piece if type(piece) is bytes else values[piece] for piece in pieces)


class PooledConnection:
    """`with PooledConnection(client) as connection:` one connection from the client's pool, for
    one exchange (the relay, the CLI, tests)."""

    def __init__(self, client: redis.Redis):
        self.pool = client.connection_pool
        self.connection: redis.Connection | None = None

    def __enter__(self) -> redis.Connection:
        self.connection = self.pool.get_connection()
        return self.connection

    def __exit__(self, error_type, error, traceback) -> None:
        connection, self.connection = self.connection, None
        if error_type is not None:
            connection.disconnect()  # a reply may be half read: never reuse it
        self.pool.release(connection)


class ThreadConnection:
    """`with thread_connection as connection:` each thread's own connection, outside redis-py's
    pool: the request path's.

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

    def __enter__(self) -> redis.Connection:
        connection = getattr(self.local, "connection", None)
        if connection is None or connection.pid != os.getpid():  # new thread, or a forked child
            connection = self.local.connection = self.connection_class(**self.connection_kwargs)
        else:
            try:
                if connection.can_read():
                    connection.disconnect()
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
                connection.disconnect()
        return connection

    def __exit__(self, error_type, error, traceback) -> None:
        if error_type is not None:
            self.local.connection.disconnect()  # a reply may be half read: never reuse it


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
    stamp = timestamp(now())  # rq stamps each job as it goes; these go in one round trip
    queue_keys = set()
    packed = [b""]
    for row in rows:
        queue = by_name[queue_name(row.kind)]
        queue_keys.add(queue.key)
        packed.append(packed_enqueue(queue, row, settings.job_timeout, intervals, script.sha,
                                     stamp))  # fmt: skip
    packed[0] = hiredis.pack_command(("SADD", Queue.redis_queues_keys, *sorted(queue_keys)))
    packed = b"".join(packed)
    with connection or PooledConnection(client) as link:
        replies = _exchange(link, packed, len(rows) + 1)
        if any(isinstance(reply, redis.exceptions.NoScriptError) for reply in replies):
            [loaded] = _exchange(link, hiredis.pack_command(("SCRIPT", "LOAD", script.script)), 1)
            if isinstance(loaded, Exception):
                raise loaded
            replies = _exchange(link, packed, len(rows) + 1)
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return [reply != 0 for reply in replies[1:]]
