"""rq plumbing: the Redis client, the outbound queues, and handing outbox rows to rq.

Every job is `leadsvc.jobs.tasks.deliver_rows(outbox_ids)`: one job delivers a batch of rows of
one channel, so rq's own bookkeeping for a job (a few dozen Redis round trips) is paid once per
batch rather than once per message. Jobs carry the JSON serializer, a timeout for the whole
batch and the job id of their first row, `outbox-<id>-<generation>`. Retries are the outbox's
own: a failed row goes back to pending with its next try's time, and the dispatcher hands it on
again when that time comes. Rows reach here only through the dispatcher, which takes each row
generation off the outbox exactly once (`leadsvc.outbox.dispatch.take_for_dispatch`), so the
batches go to rq with its bulk `enqueue_many` in one pipeline; a job that somehow runs twice
finds its rows settled and sends nothing (`leadsvc.jobs.tasks`).

There is one queue per channel, and workers take from `webhooks` before `outbound` (emails).
"""

from __future__ import annotations

from collections import defaultdict

import redis
from rq import Queue
from rq.serializers import JSONSerializer

from leadsvc.outbox.kinds import CHANNELS

JOB_FUNCTION = "leadsvc.jobs.tasks.deliver_rows"
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


def enqueue_batches(queues: list[Queue], batches, settings) -> None:
    """Put batches of outbox rows on rq, each on its channel's queue, in one Redis round trip."""
    by_name = {queue.name: queue for queue in queues}
    jobs: dict[str, list] = defaultdict(list)
    for batch in batches:
        ids = [row.id for row in batch.rows]
        jobs[batch.channel].append(
            Queue.prepare_data(
                JOB_FUNCTION,
                args=[ids],
                timeout=settings.job_timeout * len(ids),
                result_ttl=RESULT_TTL,
                failure_ttl=FAILURE_TTL,
                description=f"deliver outbox rows {ids[0]}..{ids[-1]} ({len(ids)})",
                job_id=batch.job_id,
            )
        )
    with queues[0].connection.pipeline() as pipeline:
        for name, batch_jobs in jobs.items():
            by_name[name].enqueue_many(batch_jobs, pipeline=pipeline)
        pipeline.execute()
