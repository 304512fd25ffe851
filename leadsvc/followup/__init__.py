"""Dealer follow-up: response targets in business hours, reminders, moves, figures.

`service.follow_up_for_app` is the pass the relay and the in-process drainer run; `api` holds
the answer endpoint and the admin figures; `init_app` lends the dealer feed and /metrics the
figures (they sit below this package and look them up in `app.extensions`).
"""

from __future__ import annotations

from flask import Flask

FEED_FIGURES_KEY = "leadsvc.dealer_feed_figures"
METRICS_COLLECTORS_KEY = "leadsvc.metrics_collectors"


def init_app(app: Flask) -> None:
    from leadsvc.followup.figures import feed_figures
    from leadsvc.followup.metrics import FollowUpCollector

    app.extensions[FEED_FIGURES_KEY] = feed_figures
    app.extensions.setdefault(METRICS_COLLECTORS_KEY, []).append(FollowUpCollector(app))


def blueprints():
    """The API blueprints of this package."""
    from leadsvc.followup.api import admin_blp, dealer_blp

    return [dealer_blp, admin_blp]
