"""Follow-up figures per dealer for /metrics, read from the database at each scrape."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from flask import Flask
from prometheus_client.core import GaugeMetricFamily

from leadsvc.dealers.models import Dealer
from leadsvc.extensions import db
from leadsvc.followup.figures import dealer_figures

log = logging.getLogger(__name__)
HELP = {
    "received": "Leads received (each dealer's turn with a lead counts once)",
    "answered": "Leads answered (acknowledged or marked answered)",
    "answered_within_target": "Leads answered within the response target",
    "median_answer_hours": "Median time to answer, in business hours",
    "p90_answer_hours": "90th percentile time to answer, in business hours",
    "reminded": "Leads reminded at half the response target",
    "moved_away": "Leads moved to another dealer at the response target",
    "received_by_reassignment": "Leads received because another dealer missed its target",
}


class FollowUpCollector:
    """`leadsvc_follow_up_<figure>{dealer="CODE"}` gauges."""

    def __init__(self, app: Flask):
        self.app = app

    def collect(self):
        try:
            with db.sessionmaker(self.app)() as session:
                codes = dict(session.execute(sa.select(Dealer.id, Dealer.code)).all())
                figures = dealer_figures(session)
        except sa.exc.DBAPIError as error:
            log.warning("metrics: follow-up figures unreadable (%s)", type(error.orig).__name__)
            return
        for name, text in HELP.items():
            family = GaugeMetricFamily(f"leadsvc_follow_up_{name}", text, labels=["dealer"])
            for dealer_id, values in sorted(figures.items()):
                if values[name] is not None:
                    family.add_metric([codes.get(dealer_id, str(dealer_id))], values[name])
            yield family
