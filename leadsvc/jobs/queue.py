"""rq plumbing: the Redis client, the outbound queues, and handing outbox rows to rq.

Every job is `leadsvc.jobs.tasks.deliver(outbox_id)` with the JSON serializer, an explicit
timeout, `Retry` with the configured intervals, and the job id `outbox-<id>-<generation>`.
Rows reach here only through the dispatcher, which takes each row generation off the outbox
exactly once (`leadsvc.outbox.messages.take_for_dispatch`), so a batch goes to rq with its bulk
`enqueue_many` in one pipeline; a job that somehow runs twice finds its row settled and sends
nothing (`leadsvc.jobs.tasks`).

There is one queue per channel, and workers take from `webhooks` before `outbound` (emails).
"""

from __future__ import annotations

from collections import defaultdict

import redis
from rq import Queue, Retry
from rq.serializers import JSONSerializer

from leadsvc.outbox.kinds import CHANNELS, channel_of
from leadsvc.outbox.messages import QueuedRow

JOB_FUNCTION = "leadsvc.jobs.tasks.deliver"
#: Failed jobs stay inspectable in rq this long; the outbox keeps its own record regardless.
FAILURE_TTL = 7 * 86_400
#: A job's outcome is in the outbox and its attempts: rq keeps no result.
RESULT_TTL = 0


def redis_client(url: str) -> redis.Redis:
    """A client for the worker and the relay, which may wait for Redis."""
    return redis.Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)


def outbound_queues(connection: redis.Redis, job_timeout: int) -> list[Queue]:
    """The queues, in the order workers take from them."""
    return [
        Queue(name, connection=connection, serializer=JSONSerializer, default_timeout=job_timeout)
        for name in CHANNELS
    ]


def retry_policy(settings) -> Retry:
    """rq retries a failed try after each configured interval (the worker's scheduler runs it)."""
    intervals = list(settings.job_retry_intervals)
    return Retry(max=len(intervals), interval=intervals)


def enqueue_rows(queues: list[Queue], rows: list[QueuedRow], settings) -> None:
    """Put outbox rows on rq, each on its channel's queue, in one Redis round trip."""
    by_name = {queue.name: queue for queue in queues}
    batches: dict[str, list] = defaultdict(list)
    retry = retry_policy(settings)
    for row in rows:
        batches[channel_of(row.kind)].append(
            Queue.prepare_data(
                JOB_FUNCTION,
                args=[row.id],
                timeout=settings.job_timeout,
                result_ttl=RESULT_TTL,
                failure_ttl=FAILURE_TTL,
                description=f"deliver outbox {row.id} ({row.kind})",
                job_id=row.job_id,
                retry=retry,
            )
        )
    with queues[0].connection.pipeline() as pipeline:
        for name, batch in batches.items():
            by_name[name].enqueue_many(batch, pipeline=pipeline)
        pipeline.execute()
