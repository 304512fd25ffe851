"""Prometheus metrics: requests, latency, signups by outcome, outbox depth, job outcomes.

`GET /metrics` answers callers on the loopback (a sidecar or `curl` on the host), or with
`Authorization: Bearer <METRICS_TOKEN>` when that is set; anyone else gets 403. Under gunicorn
with several workers, set `PROMETHEUS_MULTIPROC_DIR` (config/gunicorn.conf.py does) so every
worker's counts are summed.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import time

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter("leadsvc_http_requests_total", "HTTP requests", ["route", "method", "status"])
LATENCY = Histogram(
    "leadsvc_http_request_seconds", "HTTP request latency", ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)  # fmt: skip
SIGNUPS = Counter("leadsvc_signups_total", "Signups by outcome", ["outcome"])
JOBS = Counter(
    "leadsvc_jobs_total", "Outbound job attempts by kind and outcome", ["kind", "outcome"]
)
OUTBOX_DEPTH = Gauge("leadsvc_outbox_pending", "Outbox rows not yet done", ["kind"],
                     multiprocess_mode="max")  # fmt: skip
OUTBOX_OLDEST = Gauge("leadsvc_outbox_oldest_pending_seconds", "Age of the oldest pending row",
                      multiprocess_mode="max")  # fmt: skip

blp = Blueprint("metrics", __name__)


def count_signup(outcome: str) -> None:
    """accepted, invalid, bot, rate_limited, unavailable."""
    SIGNUPS.labels(outcome).inc()


def _start_timer() -> None:
    g.metrics_started = time.perf_counter()


def _observe(response):
    started = g.pop("metrics_started", None)
    route = request.url_rule.rule if request.url_rule else "unmatched"
    if started is not None:
        LATENCY.labels(route).observe(time.perf_counter() - started)
    REQUESTS.labels(route, request.method, str(response.status_code)).inc()
    return response


def _allowed() -> bool:
    token = current_app.config.get("METRICS_TOKEN")
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(presented, token):
        return True
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    return address.is_loopback


def _refresh_outbox_gauges() -> None:
    refresh = current_app.extensions.get("leadsvc.outbox_gauges")
    if refresh is not None:
        refresh(OUTBOX_DEPTH, OUTBOX_OLDEST)


@blp.get("/metrics")
def metrics():
    """Prometheus text format."""
    if not _allowed():
        return Response("metrics are served to the internal network only\n", 403,
                        mimetype="text/plain")  # fmt: skip
    _refresh_outbox_gauges()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
    return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)


def init_app(app: Flask) -> None:
    app.before_request(_start_timer)
    app.after_request(_observe)
