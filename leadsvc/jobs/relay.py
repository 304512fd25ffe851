"""The relay (`leadsvc relay`, a Procfile process): hands outbox rows to rq and keeps them moving.

The request path writes rows and talks to nothing but the database. The relay:

- dispatches: it takes the due pending rows (FOR UPDATE SKIP LOCKED, so several relays never
  take the same row) and puts them on rq with `enqueue_many`; while rows keep coming it goes on
  at once, and when there were none it looks again after `POLL_SECONDS` (50 ms), an indexed
  query on the open rows. A PostgreSQL NOTIFY at each signup's commit was measured as the
  alternative: it serialises the commits of concurrent signups (a global lock) and cost about a
  quarter of the signup throughput, for a wake-up a few tens of milliseconds sooner;
- every `interval` seconds, also: settles tries whose lease ran out (their worker died),
  seals new consent events into the hash chain, and sweeps queued rows whose rq job is gone
  (Redis lost it, or it ended without settling its row) back to pending under a new generation;
- every BOUNCE_POLL_SECONDS, when BOUNCE_IMAP_URL is set, reads the bounce mailbox (as
  `leadsvc bounces poll` does; several relays reading it at once record each notice once).

Redis being down delays mail but never loses a row: rows whose hand-off failed go back to
pending, and the relay keeps trying with a growing pause.
"""

from __future__ import annotations

import imaplib
import logging
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

import redis
from flask import Flask
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from sqlalchemy.exc import SQLAlchemyError

from leadsvc.consent.chain import seal_for_app
from leadsvc.db import utcnow
from leadsvc.deliverability.imap import poll_mailbox
from leadsvc.extensions import db
from leadsvc.followup.service import follow_up_for_app
from leadsvc.jobs.queue import enqueue_batches, outbound_queues
from leadsvc.ops.dependencies import next_backoff, setting_of, unreachable, wait_for_services
from leadsvc.ops.logs import describe_error
from leadsvc.outbox.dispatch import give_back, next_generation, queued_before, take_for_dispatch
from leadsvc.outbox.messages import reclaim_expired

log = logging.getLogger(__name__)

#: A row re-enqueued this many times without settling is given up on (status failed, kept).
MAX_GENERATIONS = 20
#: Queued rows younger than this are not swept (another relay may be enqueueing them now).
SWEEP_GRACE_SECONDS = 30
#: A job still "started" this long after its timeout lost its worker.
LOST_AFTER_SECONDS = 30
#: Rows taken per dispatch.
BATCH = 500
#: Rows one rq job delivers at the most (rq's bookkeeping is paid once per job).
JOB_BATCH = 20
#: Seconds between two looks for new rows when the last found none.
POLL_SECONDS = 0.05


@dataclass
class RelayReport:
    reclaimed: int = 0
    enqueued: int = 0
    swept: int = 0
    given_up: int = 0
    sealed: int = 0
    bounce_mails: int = 0

    def __bool__(self) -> bool:
        return any(vars(self).values())


class Relay:
    """One relay's work on one app and one Redis connection."""

    def __init__(self, app: Flask, connection: redis.Redis):
        self.app = app
        self.settings = app.config["LEADSVC_SETTINGS"]
        self.connection = connection
        self.queues = outbound_queues(connection, self.settings.job_timeout)
        self.sessions = db.sessionmaker(app)
        self.next_bounce_poll = 0.0

    def dispatch(self) -> int:
        """Hand every due pending row to rq; returns how many."""
        handed = 0
        while True:
            with self.sessions() as session:
                batches = take_for_dispatch(session, BATCH, JOB_BATCH)
            if not batches:
                return handed
            try:
                enqueue_batches(self.queues, batches, self.settings)
            except redis.exceptions.RedisError:
                with self.sessions() as session:
                    give_back(session, batches)
                raise
            handed += sum(len(batch.rows) for batch in batches)

    def full_pass(self) -> RelayReport:
        """Settle expired tries, seal consent events, dispatch, sweep (see the module)."""
        report = RelayReport()
        with self.sessions() as session:
            report.reclaimed = len(reclaim_expired(session, self.settings.max_attempts))
        report.sealed = seal_for_app(self.app).events
        follow_up_for_app(self.app)  # reminders and moves of unanswered leads
        report.bounce_mails = self.poll_bounces()
        report.enqueued = self.dispatch()
        report.swept, report.given_up = self.sweep()
        report.enqueued += self.dispatch()  # what the sweep put back
        return report

    def poll_bounces(self) -> int:
        """Read the bounce mailbox if one is set and BOUNCE_POLL_SECONDS have passed since the
        last read; returns how many messages it held. A mailbox that cannot be read is logged
        and tried again at the next interval: it never stops the relay's other work."""
        if not self.settings.bounce_imap_url or time.monotonic() < self.next_bounce_poll:
            return 0
        self.next_bounce_poll = time.monotonic() + self.settings.bounce_poll_seconds
        try:
            with self.sessions() as session:
                return poll_mailbox(session, self.settings).outcomes.total()
        except (imaplib.IMAP4.error, OSError) as error:
            log.warning("relay: the bounce mailbox: %s", describe_error(error))
            return 0

    def sweep(self) -> tuple[int, int]:
        """Queued rows whose job is gone go back to pending (new generation), or fail after
        `MAX_GENERATIONS`; returns (put back, given up)."""
        moment = utcnow() - timedelta(seconds=SWEEP_GRACE_SECONDS)
        swept = given_up = after_id = 0
        # A backlog waits in the queues: one read of each queue's job ids spares fetching and
        # placing each of its jobs (the cost of a pass no longer grows with the backlog's square).
        waiting = self._waiting()
        while True:
            with self.sessions() as session:
                rows = queued_before(session, moment, after_id, BATCH)
            if not rows:
                return swept, given_up
            after_id = rows[-1][0].id
            job_ids = sorted({job_id for _, job_id in rows} - waiting)
            if not job_ids:
                continue
            jobs = Job.fetch_many(job_ids, connection=self.connection, serializer=JSONSerializer)
            taken = self._taken()
            lost = {
                job_id for job_id, job in zip(job_ids, jobs, strict=True) if self._lost(job, taken)
            }
            for row, job_id in rows:
                if job_id not in lost:
                    continue
                with self.sessions() as session:
                    outcome = next_generation(session, row, MAX_GENERATIONS)
                swept += outcome == "pending"
                given_up += outcome == "failed"

    def _waiting(self) -> set[str]:
        """The jobs waiting in the queues for a worker (none of them is lost)."""
        return {job_id for queue in self.queues for job_id in queue.get_job_ids()}

    def _taken(self) -> dict[str, object]:
        """The jobs a worker has taken off a queue and not started yet (rq keeps them in the
        queue's intermediate list meanwhile), each with that list."""
        return {
            job_id: queue.intermediate_queue
            for queue in self.queues
            for job_id in queue.intermediate_queue.get_job_ids()
        }

    def _lost(self, job: Job | None, taken: dict[str, object]) -> bool:
        """Whether nothing will ever run `job` to settle its row."""
        if job is None:
            return True
        status = job.get_status(refresh=False)
        if status in (JobStatus.SCHEDULED, JobStatus.DEFERRED):
            return False
        if status == JobStatus.STARTED:
            started = job.started_at
            limit = (job.timeout or self.settings.job_timeout) + LOST_AFTER_SECONDS
            return started is not None and utcnow() - started > timedelta(seconds=limit)
        if status == JobStatus.QUEUED:
            if job.get_position() is not None:
                return False  # waiting for a worker
            intermediate = taken.get(job.id)
            if intermediate is not None:
                # Taken by a worker that has not started it yet: lost only when it stays there
                # longer than rq itself allows (its worker died between taking and starting).
                intermediate.set_first_seen(job.id)
                return intermediate.should_be_cleaned_up(job.id)
            # In no list at all (a worker started it just now, or Redis lost the list).
            return job.get_status(refresh=True) == JobStatus.QUEUED
        return True  # finished, failed, stopped or canceled, and the row still waits


def relay_once(app: Flask, connection: redis.Redis) -> RelayReport:
    """One full pass (the `--once` flag, tests)."""
    return Relay(app, connection).full_pass()


def run_relay(
    app: Flask, connection: redis.Redis, interval: float, stop: threading.Event | None = None
) -> None:
    """Dispatch continuously and make a full pass every `interval` seconds, until `stop` is set;
    outages are logged with their cause and waited out with a growing pause."""
    stop = stop or threading.Event()
    if not wait_for_services(app, log, "relay", stop):
        return
    relay = Relay(app, connection)
    next_pass, backoff = 0.0, 0.0
    while not stop.is_set():
        try:
            if time.monotonic() >= next_pass:
                report = relay.full_pass()
                next_pass = time.monotonic() + interval
                if report:
                    log.info("relay: %s", report)
            elif not relay.dispatch():
                stop.wait(POLL_SECONDS)
            backoff = 0.0
        except (redis.exceptions.RedisError, SQLAlchemyError) as error:
            backoff = next_backoff(backoff)
            line = unreachable(setting_of(error), describe_error(error))
            log.warning("relay: %s; trying again in %.1f s", line, backoff)
            stop.wait(backoff)
