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
import zlib

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


def enqueue_many(queues: list[Queue], rows: list[QueuedRow], settings) -> list[bool]:
    """Put outbox rows on rq in one Redis round trip; per row, False if its job already existed.

    Each job goes in with rq's own atomic unique-enqueue script (what `Queue.enqueue(...,
    unique=True)` runs, one round trip per job), all of them in one pipeline. The script is
    called by its SHA: redis-py's script pipeline would ask Redis whether it is loaded (a round
    trip) on every call; here it is loaded only when Redis says it does not have it (first use,
    or Redis restarted), and the pipeline sent again (nothing in it ran but the SADD).
    """
    by_name = {queue.name: queue for queue in queues}
    intervals = tuple(settings.job_retry_intervals)
    connection = queues[0].connection
    script = get_unique_enqueue_script(connection)
    calls = []
    for row in rows:
        queue = by_name[queue_name(row.kind)]
        fields = job_hash(queue, row, settings.job_timeout, intervals)
        calls.append((queue.job_class.key_for(row.job_id), queue.key, row.job_id, "R", -1,
                      *fields))  # fmt: skip
    queue_keys = {by_name[queue_name(row.kind)].key for row in rows}
    for loaded in (False, True):
        with connection.pipeline(transaction=False) as pipeline:
            pipeline.sadd(Queue.redis_queues_keys, *queue_keys)
            for call in calls:
                pipeline.evalsha(script.sha, 2, *call)
            try:
                replies = pipeline.execute()
                break
            except redis.exceptions.NoScriptError:
                if loaded:
                    raise
        connection.script_load(script.script)
    return [reply != 0 for reply in replies[1:]]
