"""Bounce and complaint figures for /metrics, read from the database at each scrape."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from flask import Flask
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from leadsvc.deliverability.figures import (
    bounce_rate_per_day,
    events_by_kind,
    events_by_kind_and_day,
)
from leadsvc.extensions import db

log = logging.getLogger(__name__)
#: Days the per-day figures cover (today included): a bounded number of label values.
METRIC_DAYS = 7


class BounceCollector:
    """`leadsvc_bounce_events_total{kind}`, `leadsvc_bounce_events_by_day{kind,day}` and
    `leadsvc_bounce_rate{day}` (of the emails sent that day, the share that bounced)."""

    def __init__(self, app: Flask):
        self.app = app

    def collect(self):
        try:
            with db.sessionmaker(self.app)() as session:
                totals = events_by_kind(session)
                by_day = events_by_kind_and_day(session, METRIC_DAYS)
                rates = bounce_rate_per_day(session, METRIC_DAYS)
        except sa.exc.DBAPIError as error:
            log.warning("metrics: bounce figures unreadable (%s)", type(error.orig).__name__)
            return
        total = CounterMetricFamily(
            "leadsvc_bounce_events",
            "Bounces (hard, soft) and complaints recorded, by kind",
            labels=["kind"],
        )
        for kind, count in sorted(totals.items()):
            total.add_metric([kind], count)
        daily = GaugeMetricFamily(
            "leadsvc_bounce_events_by_day",
            f"Bounces and complaints recorded per day (UTC), last {METRIC_DAYS} days, by kind",
            labels=["kind", "day"],
        )
        for day, kinds in by_day.items():
            for kind, count in sorted(kinds.items()):
                daily.add_metric([kind, day.isoformat()], count)
        rate = GaugeMetricFamily(
            "leadsvc_bounce_rate",
            f"Share of the emails sent each day that bounced, last {METRIC_DAYS} days",
            labels=["day"],
        )
        for row in rates:
            rate.add_metric([row.day.isoformat()], row.rate)
        yield from (total, daily, rate)
