"""Prometheus metrics: requests, latency, signups by outcome, outbox depth, job outcomes.

`GET /metrics` answers callers on the loopback (a sidecar or `curl` on the host), or with
`Authorization: Bearer <METRICS_TOKEN>` when that is set; anyone else gets 403. A request that a
proxy forwarded (X-Forwarded-For / Forwarded present while PROXY_COUNT is 0) is not a loopback
caller, even though it arrives from the proxy on 127.0.0.1. Under gunicorn with several workers,
set `PROMETHEUS_MULTIPROC_DIR` (config/gunicorn.conf.py does) so every worker's counts are summed.

Outbox depth, the age of its oldest open row and job outcomes are read from the database at each
scrape: jobs run in rq workers or the in-process drainer, in other processes than the one
answering, and the outbox and its attempts are their one shared record.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import logging
import os
import time

import sqlalchemy as sa
from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from leadsvc.db import utcnow
from leadsvc.extensions import db
from leadsvc.ops.logs import request_line

REQUESTS = Counter("leadsvc_http_requests_total", "HTTP requests", ["route", "method", "status"])
LATENCY = Histogram(
    "leadsvc_http_request_seconds",
    "HTTP request latency",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
SIGNUPS = Counter("leadsvc_signups_total", "Signups by outcome", ["outcome"])

blp = Blueprint("metrics", __name__)
log = logging.getLogger(__name__)


def count_signup(outcome: str) -> None:
    """accepted, invalid, bot, rate_limited, unavailable."""
    _signup_counter(outcome).inc()


# Each metric's child for a set of label values, looked up once: `labels()` validates the values
# and takes the metric's lock on every call. Bounded, as a client chooses the method it sends.
_signup_counter = functools.lru_cache(maxsize=64)(SIGNUPS.labels)
_latency = functools.lru_cache(maxsize=256)(LATENCY.labels)
_request_counter = functools.lru_cache(maxsize=1024)(REQUESTS.labels)


def _start_timer() -> None:
    g.metrics_started = time.perf_counter()


def _observe(response):
    started = g.pop("metrics_started", None)
    route = request.url_rule.rule if request.url_rule else "unmatched"
    seconds = time.perf_counter() - started if started is not None else 0.0
    if started is not None:
        _latency(route).observe(seconds)
    _request_counter(route, request.method, str(response.status_code)).inc()
    request_line(request.method, route, response.status_code, seconds)
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
    proxy_count = current_app.config["LEADSVC_SETTINGS"].proxy_count
    forwarded = "X-Forwarded-For" in request.headers or "Forwarded" in request.headers
    return address.is_loopback and not (forwarded and proxy_count == 0)


class OutboxCollector:
    """The outbox's open rows by kind, the age of the oldest, and job attempts by kind and outcome,
    as the database holds them at scrape time."""

    def __init__(self, app: Flask):
        self.app = app

    def collect(self):
        from leadsvc.outbox.messages import OPEN
        from leadsvc.outbox.models import OutboxAttempt, OutboxMessage

        first_created = sa.func.min(OutboxMessage.created_at)
        try:
            with db.sessionmaker(self.app)() as session:
                open_rows = session.execute(
                    sa.select(OutboxMessage.kind, sa.func.count(), first_created)
                    .where(OutboxMessage.status.in_(OPEN))
                    .group_by(OutboxMessage.kind)
                ).all()
                attempts = session.execute(
                    sa.select(OutboxMessage.kind, OutboxAttempt.outcome, sa.func.count())
                    .join(OutboxMessage, OutboxMessage.id == OutboxAttempt.outbox_id)
                    .group_by(OutboxMessage.kind, OutboxAttempt.outcome)
                ).all()
        except sa.exc.DBAPIError as error:
            log.warning("metrics: the outbox is unreadable (%s)", type(error.orig).__name__)
            return
        pending = GaugeMetricFamily(
            "leadsvc_outbox_pending", "Outbox rows not yet done, by kind", labels=["kind"]
        )
        oldest = GaugeMetricFamily(
            "leadsvc_outbox_oldest_pending_seconds", "Age of the oldest outbox row not yet done"
        )
        jobs = CounterMetricFamily(
            "leadsvc_jobs", "Outbound job attempts by kind and outcome", labels=["kind", "outcome"]
        )
        now, first = utcnow(), None
        for kind, count, created_at in open_rows:
            pending.add_metric([kind], count)
            first = created_at if first is None or created_at < first else first
        oldest.add_metric([], max(0.0, (now - first).total_seconds()) if first else 0.0)
        for kind, outcome, count in attempts:
            jobs.add_metric([kind, outcome], count)
        yield from (pending, oldest, jobs)


@blp.get("/metrics")
def metrics():
    """Prometheus text format."""
    if not _allowed():
        return Response(
            "metrics are served to the internal network only\n", 403, mimetype="text/plain"
        )
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        text = generate_latest(registry)
    else:
        text = generate_latest()
    text += generate_latest(OutboxCollector(current_app._get_current_object()))
    # Collectors other packages lend (leadsvc.followup's per-dealer figures).
    for collector in current_app.extensions.get("leadsvc.metrics_collectors", ()):
        text += generate_latest(collector)
    return Response(text, mimetype=CONTENT_TYPE_LATEST)


def init_app(app: Flask) -> None:
    # First of all before-request functions: a request the limiter or the body checks refuse is
    # timed too.
    app.before_request_funcs.setdefault(None, []).insert(0, _start_timer)
    app.after_request(_observe)
