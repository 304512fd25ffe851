"""Outbound jobs: the outbox, its relay to rq, the job functions and the in-process drainer.

`init_app` makes every commit that wrote outbox rows dispatch them (to rq when REDIS_URL is set)
and, without Redis, starts the in-process drainer on the first request of each process (after
gunicorn's fork); `leadsvc serve` starts it at once.
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from leadsvc.jobs import dispatch

    dispatch.install(app)
    if app.config["LEADSVC_SETTINGS"].redis_url is None:

        @app.before_request
        def _deliver_in_process() -> None:
            start_in_process_delivery(app)


def start_in_process_delivery(app: Flask) -> bool:
    """Start the drainer if this app delivers its own outbox (no Redis, not under test)."""
    from leadsvc.jobs.drainer import running_drainer, start_drainer

    if app.config["LEADSVC_SETTINGS"].redis_url is not None or app.testing:
        return False
    if running_drainer(app) is None:
        start_drainer(app)
    return True
