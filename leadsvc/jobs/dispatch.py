"""After a commit that wrote outbox rows: hand them to rq, or wake the in-process drainer.

`add_message` notes each new row on its session; the app's sessions run `_after_commit` once the
transaction is durable, so a job never runs before the row it reads exists, and a rolled-back
signup enqueues nothing. On the request path Redis gets a fraction of a second: if it is down the
signup still succeeds, the rows stay pending, and the relay (`leadsvc relay`) enqueues them.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback

import redis
import sqlalchemy as sa
from flask import Flask

from leadsvc.extensions import db
from leadsvc.jobs.outbox import NEW_ROWS_KEY, QueuedRow
from leadsvc.jobs.queue import ThreadConnection, enqueue_many, outbound_queues, request_redis

log = logging.getLogger(__name__)

DISPATCHER_KEY = "leadsvc.outbox_dispatcher"
#: After Redis failed on the request path, further requests skip it this long (the relay enqueues).
REDIS_BACKOFF_SECONDS = 5.0


class RqDispatcher:
    """Enqueues committed outbox rows on rq from the request path, with bounded waits."""

    def __init__(self, settings):
        self.settings = settings
        client = request_redis(settings.redis_url)
        self.queues = outbound_queues(client, settings.job_timeout)
        self.connection = ThreadConnection(client)
        self._skip_until = 0.0
        self._lock = threading.Lock()

    def dispatch(self, rows: list[QueuedRow]) -> None:
        if time.monotonic() < self._skip_until:
            log.info("redis recently unavailable: %d outbox rows left for the relay", len(rows))
            return
        try:
            enqueue_many(self.queues, rows, self.settings, self.connection)
        except redis.exceptions.RedisError as error:
            with self._lock:
                self._skip_until = time.monotonic() + REDIS_BACKOFF_SECONDS
            log.warning("redis unavailable (%s): %d outbox rows left for the relay",
                        type(error).__name__, len(rows))  # fmt: skip


class DrainerDispatcher:
    """Without Redis: wake the in-process drainer (if it runs in this process)."""

    def __init__(self, app: Flask):
        self.app = app

    def dispatch(self, rows: list[QueuedRow]) -> None:
        from leadsvc.jobs.drainer import running_drainer

        drainer = running_drainer(self.app)
        if drainer is not None:
            drainer.wake()


def _take_rows(session) -> list[QueuedRow]:
    return session.info.pop(NEW_ROWS_KEY, [])


def dispatch_committed(app: Flask, rows: list[QueuedRow]) -> None:
    """Hand committed outbox rows to rq (or the drainer); a failure leaves them to the relay."""
    if not rows:
        return
    try:
        app.extensions[DISPATCHER_KEY].dispatch(rows)
    except Exception as error:  # the rows are committed: the relay enqueues them anyway
        stack = "".join(traceback.format_tb(error.__traceback__))
        log.error("outbox dispatch failed: %s; %d rows left for the relay\n%s",
                  type(error).__name__, len(rows), stack)  # fmt: skip


def install(app: Flask) -> None:
    """Dispatch the outbox rows of every commit made through the app's sessions."""
    settings = app.config["LEADSVC_SETTINGS"]
    dispatcher = RqDispatcher(settings) if settings.redis_url else DrainerDispatcher(app)
    app.extensions[DISPATCHER_KEY] = dispatcher

    def after_commit(session) -> None:
        dispatch_committed(app, _take_rows(session))

    def after_rollback(session) -> None:
        _take_rows(session)

    sessions = db.sessionmaker(app)
    sa.event.listen(sessions, "after_commit", after_commit)
    sa.event.listen(sessions, "after_rollback", after_rollback)
