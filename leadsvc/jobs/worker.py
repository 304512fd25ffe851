"""The rq worker that runs the outbound jobs: rq's `SimpleWorker`, in the app context, with rq's
bookkeeping for a delivery job cut to the Redis round trips it needs.

rq 3 spends about 26 Redis round trips on a job that succeeds, as many as the job's own work
costs. Most of them are writes of values that were just written, or reads of what the worker
already holds. This worker keeps rq's data model exactly as rq leaves it (the same keys, the same
registries, the same counters) and leaves out only those:

- the worker's full heartbeat (three commands) goes out as one pipeline, at most once a second
  (`HEARTBEAT_EVERY_SECONDS`), and right after a job shortened the worker key's time to live;
- the worker's state is written only when it changes (rq writes `idle` twice between two jobs);
- whether workers are suspended (`rq suspend`) is asked at most once a second, not every job;
- a delivery job is started in one transaction (rq makes two: the execution, then the job);
- a delivery job that succeeded (`deliver`, whose result rq discards: `result_ttl=0`, nothing
  depends on it, no callbacks, no group, no repeats, no rate limit) is deleted in the one
  transaction that also counts it and closes its execution. rq would first read the job's status
  and its list of executions back from Redis, twice, to delete what the worker holds in memory,
  and would write a last heartbeat to the job it deletes a moment later.

Everything else (a failure, a retry, a job of another kind) goes through rq as it is.
"""

from __future__ import annotations

import time

from flask import Flask
from rq import Queue, SimpleWorker
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.results import Result
from rq.utils import now
from rq.worker import WorkerStatus

from leadsvc.jobs.queue import JOB_FUNCTION


class AppWorker(SimpleWorker):
    """An rq worker that runs each job in the worker process itself (no fork), in the app context.

    rq's default worker forks a work horse per job, which costs tens of milliseconds and a fresh
    database connection every time (about 4 jobs/s per worker on this machine); the jobs here are
    short network calls with their own timeouts, so running them in the worker process keeps the
    connection pool warm. A job past `JOB_TIMEOUT` is still interrupted (SIGALRM), and a worker
    killed mid-job is covered by the relay like a killed work horse was.
    """

    #: How often the worker's key gets its full time to live again while jobs keep coming. rq
    #: refreshes it three times per job (after it, before and after the dequeue).
    HEARTBEAT_EVERY_SECONDS = 1.0

    def __init__(self, *args, app: Flask, **kwargs):
        self.app = app
        self._full_heartbeat_at: float | None = None
        self._suspension_checked_at: float | None = None
        self._started_job_id: str | None = None
        super().__init__(*args, **kwargs)

    def check_for_suspension(self, burst: bool):
        at = time.monotonic()
        last = self._suspension_checked_at
        if last is not None and at - last < self.HEARTBEAT_EVERY_SECONDS:
            return
        self._suspension_checked_at = at
        super().check_for_suspension(burst)

    def heartbeat(self, timeout=None, pipeline=None):
        if timeout is not None:  # a job's shorter time to live: written, and the next full one too
            self._full_heartbeat_at = None
            super().heartbeat(timeout, pipeline)
            return
        at = time.monotonic()
        last = self._full_heartbeat_at
        if last is not None and at - last < self.HEARTBEAT_EVERY_SECONDS:
            return
        self._full_heartbeat_at = at
        if pipeline is not None:
            super().heartbeat(None, pipeline)
            return
        with self.connection.pipeline(transaction=False) as own:
            super().heartbeat(None, own)
            own.execute()

    def set_state(self, state, pipeline=None):
        if pipeline is None and state == self._state:
            return
        super().set_state(state, pipeline)

    def prepare_execution(self, job: Job) -> Execution:
        """rq's `prepare_execution` and `prepare_job_execution` in one transaction."""
        if not disposable(job):
            return super().prepare_execution(job)
        with self.connection.pipeline() as pipeline:
            ttl = self.get_heartbeat_ttl(job)
            execution = Execution.create(job, ttl, pipeline=pipeline, worker_name=self.name)
            self.executions[execution.id] = execution
            self.set_state(WorkerStatus.BUSY, pipeline=pipeline)
            self.heartbeat(ttl, pipeline=pipeline)
            job.heartbeat(now(), ttl, pipeline=pipeline)
            job.prepare_for_execution(self.name, pipeline=pipeline)
            pipeline.persist(job.key)
            if len(self.queues) == 1:
                queue = Queue(job.origin, connection=self.connection)
                pipeline.lrem(queue.intermediate_queue_key, 1, job.id)
            pipeline.execute()
        self._started_job_id = job.id
        return execution

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False):
        if self._started_job_id == job.id:  # done with the execution, above
            self._started_job_id = None
            self.procline(f"Processing {job.func_name} from {job.origin} since {time.time()}")
            return
        super().prepare_job_execution(job, remove_from_intermediate_queue)

    def perform_job(self, job, queue, execution):
        with self.app.app_context():
            return super().perform_job(job, queue, execution)

    def handle_execution_ended(self, job: Job, queue, heartbeat_ttl: int):
        if job.get_status(refresh=False) != JobStatus.FAILED and disposable(job):
            job.ended_at = now()  # no last heartbeat: the job is deleted in the next round trip
            return
        super().handle_execution_ended(job, queue, heartbeat_ttl)

    def handle_job_success(self, job: Job, queue, started_job_registry, execution):
        if not disposable(job):
            super().handle_job_success(job, queue, started_job_registry, execution)
            return
        with self.connection.pipeline() as pipeline:  # MULTI ... EXEC, as rq's own
            self.increment_successful_job_count(pipeline=pipeline)
            self.increment_total_working_time(job.ended_at - job.started_at, pipeline)
            self.cleanup_execution(job, pipeline=pipeline, execution=execution)
            pipeline.delete(job.key, job.dependents_key, job.dependencies_key,
                            Result.get_key(job.id), job.execution_registry.key)  # fmt: skip
            self.set_state(WorkerStatus.IDLE, pipeline=pipeline)
            pipeline.execute()
        job._status = JobStatus.FINISHED
        self.log.debug("Worker %s: job %s done and deleted", self.name, job.id)


def disposable(job: Job) -> bool:
    """A delivery job whose success leaves nothing in Redis: rq deletes it, and nothing waits on
    it (leadsvc enqueues it with no dependency, callback, group, repeat or rate limit)."""
    return (
        job.func_name == JOB_FUNCTION
        and job.result_ttl == 0
        and not job.repeats_left
        and not job.group_id
        and not job._dependency_ids
        and not job._success_callback_name
        and not job.has_rate_limit
    )
