"""Deliverability: bounces and complaints read from messages, a pipe or an IMAP mailbox.

`parse` reads a notification, `record` applies it, `ingest` and `imap` feed them, `figures`
counts them; `init_app` lends /metrics and the consent subject lookup their figures (those sit
below this package and look them up in `app.extensions`).
"""

from __future__ import annotations

from flask import Flask

METRICS_COLLECTORS_KEY = "leadsvc.metrics_collectors"


def init_app(app: Flask) -> None:
    from leadsvc.consent.subjects import SUBJECT_SECTIONS_KEY
    from leadsvc.deliverability.figures import bounce_history
    from leadsvc.deliverability.metrics import BounceCollector

    app.extensions.setdefault(METRICS_COLLECTORS_KEY, []).append(BounceCollector(app))
    app.extensions.setdefault(SUBJECT_SECTIONS_KEY, {})["bounces"] = bounce_history
