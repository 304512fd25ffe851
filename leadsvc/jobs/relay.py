"""The relay (`leadsvc relay`, a Procfile process): makes rq hold a job for every open outbox row.

Redis is only the delivery path and may lose everything (a restart without persistence, a
failover). Each pass, the relay:

1. settles tries whose lease ran out (their worker was killed): back to pending under a new
   generation, or `unknown` when an email had already been handed over (never resent by itself);
2. enqueues every due pending row whose current job does not exist in Redis (never enqueued
   because Redis was down at signup, or lost since);
3. re-enqueues, under a new generation, due pending rows whose job ended without settling the row
   (for instance the database was down while the job ran, until rq gave up).

Rows whose job is queued, scheduled (waiting for a retry) or started are left alone, unless the
job was lost with its worker: "started" for longer than its timeout allows, or taken off its queue
by a worker that died before starting it (rq's maintenance would notice either only minutes later).
Those are re-enqueued under a new generation.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC

import redis
from flask import Flask
from rq import Queue
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry
from rq.utils import utcparse
from sqlalchemy.exc import SQLAlchemyError

from leadsvc.consent.chain import seal_for_app
from leadsvc.db import utcnow
from leadsvc.extensions import db
from leadsvc.jobs.outbox import (
    FAILED,
    PENDING,
    QueuedRow,
    due_pending,
    lock_message,
    reclaim_expired,
)
from leadsvc.jobs.queue import enqueue, outbound_queues

log = logging.getLogger(__name__)

#: A row re-enqueued this many times without settling is given up on (status failed, kept).
MAX_GENERATIONS = 20
_WAITING = {JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED, JobStatus.STARTED}


@dataclass
class RelayReport:
    reclaimed: int = 0
    enqueued: int = 0
    given_up: int = 0
    sealed: int = 0

    def __bool__(self) -> bool:
        return bool(self.reclaimed or self.enqueued or self.given_up or self.sealed)


#: A job still "started" this long after its timeout lost its worker (rq itself notices only at
#: its next registry cleanup, minutes later).
LOST_AFTER_SECONDS = 30
LOST = "lost"


def _job_statuses(connection: redis.Redis, job_ids: list[str],
                  job_timeout: int) -> list[str | None]:  # fmt: skip
    """Each job's rq status; "lost" for one started longer ago than its timeout allows, and for
    one "queued" or "scheduled" that is in no queue or schedule (its worker died holding it, or
    rq's own cleanup dropped it), so nothing would ever run it."""
    with connection.pipeline(transaction=False) as pipeline:
        for job_id in job_ids:
            pipeline.hmget(Job.key_for(job_id), "status", "started_at", "origin")
        replies = pipeline.execute()
    now = utcnow()
    statuses = []
    for status, started_at, _ in replies:
        status = status.decode() if status else None
        if status == JobStatus.STARTED and started_at:
            started = utcparse(started_at.decode()).replace(tzinfo=UTC)
            if (now - started).total_seconds() > job_timeout + LOST_AFTER_SECONDS:
                status = LOST
        statuses.append(status)
    waiting = [
        (n, job_ids[n], statuses[n], replies[n][2].decode()) for n in range(len(job_ids))
        if statuses[n] in (JobStatus.QUEUED, JobStatus.SCHEDULED) and replies[n][2]
    ]  # fmt: skip
    for n in _held_nowhere(connection, waiting):
        statuses[n] = LOST
    return statuses


def _held_nowhere(connection: redis.Redis, waiting: list[tuple[int, str, str, str]]) -> list[int]:
    """Of (index, job id, status, queue name), the indexes of jobs in none of the places rq
    takes them from: the queue or a worker's hand (queued), the schedule (scheduled)."""
    if not waiting:
        return []
    with connection.pipeline(transaction=False) as pipeline:
        for _, job_id, status, origin in waiting:
            if status == JobStatus.QUEUED:
                queue_key = Queue.redis_queue_namespace_prefix + origin
                pipeline.lpos(queue_key, job_id)
                pipeline.lpos(IntermediateQueue.get_intermediate_queue_key(queue_key), job_id)
            else:
                pipeline.zscore(ScheduledJobRegistry(origin, connection=connection).key, job_id)
        replies = iter(pipeline.execute())
    missing = []
    for item in waiting:
        places = [next(replies) for _ in range(2 if item[2] == JobStatus.QUEUED else 1)]
        if all(place is None for place in places):
            missing.append(item)
    if not missing:
        return []
    # A worker may have taken and started one meanwhile: only a status still unchanged counts.
    with connection.pipeline(transaction=False) as pipeline:
        for _, job_id, _, _ in missing:
            pipeline.hget(Job.key_for(job_id), "status")
        now_status = pipeline.execute()
    return [n for (n, _, status, _), again in zip(missing, now_status, strict=True)
            if again is not None and again.decode() == status]  # fmt: skip


def _taken_but_never_started(connection: redis.Redis, queues) -> set[str]:
    """Jobs a worker moved off its queue (into rq's intermediate list) and then died before
    starting: seen there on two passes at least `LOST_AFTER_SECONDS` apart, they are lost."""
    lost = set()
    for queue in queues:
        intermediate = queue.intermediate_queue
        for job_id in intermediate.get_job_ids():
            if job_id in queue.started_job_registry or intermediate.set_first_seen(job_id):
                continue
            first_seen = intermediate.get_first_seen(job_id)
            if first_seen and (utcnow() - first_seen).total_seconds() > LOST_AFTER_SECONDS:
                intermediate.remove(job_id)
                lost.add(job_id)
    return lost


def _next_generation(app: Flask, outbox_id: int, seen: int) -> QueuedRow | str:
    """Move a pending row to its next job generation; "settled" if it no longer needs one,
    "given up" if too many jobs ended without settling it (it is failed, and kept)."""
    with db.sessionmaker(app)() as session:
        row = lock_message(session, outbox_id)
        if row is None or row.status != PENDING or row.generation != seen:
            session.rollback()
            return "settled"
        if row.generation >= MAX_GENERATIONS:
            row.status = FAILED
            row.last_error = f"given up after {row.generation} jobs ended without settling it"
            row.updated_at = utcnow()
            session.commit()
            return "given up"
        row.generation += 1
        queued = QueuedRow(row.id, row.kind, row.generation)
        session.commit()
        return queued


def relay_once(app: Flask, connection: redis.Redis) -> RelayReport:
    """One pass over the outbox (see the module docstring)."""
    settings = app.config["LEADSVC_SETTINGS"]
    queues = outbound_queues(connection, settings.job_timeout)
    report = RelayReport()
    with db.sessionmaker(app)() as session:
        report.reclaimed = len(reclaim_expired(session, settings.max_attempts))
    report.sealed = seal_for_app(app).events  # consent events into the hash chain
    lost = _taken_but_never_started(connection, queues)
    after_id = 0
    while True:
        with db.sessionmaker(app)() as session:
            rows = [QueuedRow(r.id, r.kind, r.generation)
                    for r in due_pending(session, limit=500, after_id=after_id)]  # fmt: skip
        if not rows:
            return report
        after_id = rows[-1].id
        statuses = _job_statuses(connection, [r.job_id for r in rows], settings.job_timeout)
        for row, status in zip(rows, statuses, strict=True):
            if row.job_id in lost:
                status = LOST
            if status in _WAITING:
                continue
            if status is not None:  # the job ended but the row is still pending
                row = _next_generation(app, row.id, row.generation)
                if row == "given up":
                    report.given_up += 1
                if isinstance(row, str):
                    continue
            report.enqueued += enqueue(queues, row, settings)


def run_relay(app: Flask, connection: redis.Redis, interval: float,
              stop: threading.Event | None = None) -> None:  # fmt: skip
    """Relay every `interval` seconds until `stop` is set; outages are logged and waited out."""
    stop = stop or threading.Event()
    while not stop.is_set():
        try:
            report = relay_once(app, connection)
            if report:
                log.info("relay: %d tries reclaimed, %d jobs enqueued, %d rows given up, "
                         "%d consent events sealed", report.reclaimed, report.enqueued,
                         report.given_up, report.sealed)  # fmt: skip
        except redis.exceptions.RedisError as error:
            log.warning("relay: redis unavailable (%s)", type(error).__name__)
        except SQLAlchemyError as error:
            log.warning("relay: database unavailable (%s)", type(error).__name__)
        stop.wait(interval)
