"""The embedded default without Redis: a background thread in the web process drains the outbox.

It runs the same `run_delivery` as the rq job over the same rows: due pending rows, oldest first,
one at a time; retries wait for their `next_attempt_at`, and tries whose lease ran out (the
process was killed) are settled as the relay would. A commit that writes outbox rows wakes it at
once; otherwise it looks every `POLL_SECONDS`. Several processes may each run one: the row lock
in `run_delivery` keeps them from sending a message twice.
"""

from __future__ import annotations

import logging
import threading

import sqlalchemy as sa
from flask import Flask
from sqlalchemy.exc import SQLAlchemyError

from leadsvc.consent.chain import seal_for_app
from leadsvc.extensions import db
from leadsvc.followup.service import follow_up_for_app
from leadsvc.jobs.tasks import IN_PROCESS, run_delivery
from leadsvc.ops.logs import describe_error
from leadsvc.outbox.messages import NEW_ROWS_KEY, due_waiting, reclaim_expired

log = logging.getLogger(__name__)

POLL_SECONDS = 2.0
_KEY = "leadsvc.outbox_drainer"
_starting = threading.Lock()


class OutboxDrainer:
    """A daemon thread delivering the app's outbox; `wake()` after a commit, `stop()` to end."""

    def __init__(self, app: Flask, poll_seconds: float = POLL_SECONDS):
        self.app = app
        self.poll_seconds = poll_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="outbox-drainer", daemon=True)

    def start(self) -> OutboxDrainer:
        self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.drain_once()
            except SQLAlchemyError as error:
                log.warning("outbox drainer: database error (%s)", describe_error(error))
            self._wake.wait(self.poll_seconds)

    def drain_once(self) -> int:
        """Settle expired tries, then deliver every due waiting row; returns how many were tried."""
        settings = self.app.config["LEADSVC_SETTINGS"]
        with db.sessionmaker(self.app)() as session:
            reclaim_expired(session, settings.max_attempts)
        seal_for_app(self.app)  # consent events into the hash chain
        follow_up_for_app(self.app)  # reminders and moves of unanswered leads
        tried, after_id = 0, 0
        while not self._stop.is_set():
            with db.sessionmaker(self.app)() as session:
                batch = [row.id for row in due_waiting(session, limit=50, after_id=after_id)]
            if not batch:
                return tried
            for outbox_id in batch:
                if self._stop.is_set():
                    break
                after_id = outbox_id
                tried += 1
                try:
                    run_delivery(self.app, outbox_id, runner=IN_PROCESS)
                except Exception as error:  # already recorded on the row; the next pass retries
                    log.warning("outbox %d: try failed (%s)", outbox_id, describe_error(error))
        return tried


def running_drainer(app: Flask) -> OutboxDrainer | None:
    return app.extensions.get(_KEY)


def start_drainer(app: Flask, poll_seconds: float = POLL_SECONDS) -> OutboxDrainer:
    """Start the app's drainer (once per process)."""
    with _starting:
        drainer = app.extensions.get(_KEY)
        if drainer is None:
            drainer = app.extensions[_KEY] = OutboxDrainer(app, poll_seconds).start()
    return drainer


def stop_drainer(app: Flask) -> None:
    drainer = app.extensions.pop(_KEY, None)
    if drainer is not None:
        drainer.stop()


def wake_after_commits(app: Flask) -> None:
    """Wake this process's drainer when one of the app's sessions commits outbox rows."""

    def after_commit(session) -> None:
        if session.info.pop(NEW_ROWS_KEY, None):
            drainer = running_drainer(app)
            if drainer is not None:
                drainer.wake()

    def after_rollback(session) -> None:
        session.info.pop(NEW_ROWS_KEY, None)

    sessions = db.sessionmaker(app)
    sa.event.listen(sessions, "after_commit", after_commit)
    sa.event.listen(sessions, "after_rollback", after_rollback)
