"""The rq worker that runs the outbound jobs: rq's `SimpleWorker`, each job in the app context."""

from __future__ import annotations

from flask import Flask
from rq import SimpleWorker


class AppWorker(SimpleWorker):
    """An rq worker that runs each job in the worker process itself (no fork), in the app context.

    rq's default worker forks a work horse per job, which costs tens of milliseconds and a fresh
    database connection every time; the jobs here are short network calls with their own
    timeouts, so running them in the worker process keeps the connection pool warm. A job past
    `JOB_TIMEOUT` is still interrupted, and a worker killed mid-job leaves its row to the relay,
    whose lease check settles it.
    """

    def __init__(self, *args, app: Flask, **kwargs):
        self.app = app
        super().__init__(*args, **kwargs)

    def perform_job(self, job, queue, execution):
        with self.app.app_context():
            return super().perform_job(job, queue, execution)
