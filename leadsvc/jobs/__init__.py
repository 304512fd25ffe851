"""Outbound jobs: the rq job that runs one outbox row, the worker, the relay that hands rows to
rq, and the in-process drainer that runs them without Redis.

`init_app`, without Redis, makes every commit that wrote outbox rows wake the in-process drainer,
which starts on the first request of each process (after gunicorn's fork); `leadsvc serve`
starts it at once. With Redis the request path does nothing here: `leadsvc relay` dispatches.
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from leadsvc.jobs.drainer import wake_after_commits

    if app.config["LEADSVC_SETTINGS"].redis_url is None:
        wake_after_commits(app)

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
