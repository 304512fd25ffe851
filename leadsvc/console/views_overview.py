"""Overview for admins and compliance: signups, consent, dealers, the outbox, the ledger."""

from __future__ import annotations

from flask import Response, abort, render_template, request

from leadsvc.consent import figures
from leadsvc.console import charts
from leadsvc.console.access import roles
from leadsvc.console.frame import blp
from leadsvc.deliverability.figures import bounce_rate_per_day
from leadsvc.extensions import db
from leadsvc.outbox.messages import FAILED, UNKNOWN, WAITING, outbox_status

PERIODS = (30, 90)


def _days() -> int:
    days = request.args.get("days", "30")
    return int(days) if days.isdigit() and int(days) in PERIODS else 30


def _outbox():
    status = outbox_status(db.session)
    total = lambda wanted: sum(n for (_, s), n in status.counts.items() if s in wanted)  # noqa: E731
    return {
        "pending": total(WAITING),
        "failed": total((FAILED,)),
        "unknown": total((UNKNOWN,)),
        "oldest_open_seconds": status.oldest_open_seconds,
    }


@blp.route("/overview")
@roles("admin", "compliance")
def overview():
    """The figures, each as a chart and as a table."""
    days = _days()
    return render_template(
        "console/overview.html",
        section="overview",
        days=days,
        periods=PERIODS,
        signups=figures.signups_per_day(db.session, days),
        campaigns=figures.signups_by_campaign(db.session, days),
        consent=figures.consent_split(db.session),
        dealers=figures.leads_per_dealer(db.session),
        outbox=_outbox(),
        seal=figures.last_seal(db.session),
        bounces=[
            (row.day, row.sent, row.bounced, f"{row.rate:.1%}")
            for row in bounce_rate_per_day(db.session, days)
        ],
    )


@blp.route("/overview/<any(signups, campaigns, consent, dealers, bounces):name>.svg")
@roles("admin", "compliance")
def overview_chart(name: str):
    """One chart of the overview as an SVG image."""
    days = _days()
    if name == "signups":
        svg = charts.signups_chart(figures.signups_per_day(db.session, days), days)
    elif name == "campaigns":
        rows = figures.signups_by_campaign(db.session, days)
        svg = charts.bars_chart(f"New people by campaign, last {days} days", rows)
    elif name == "consent":
        svg = charts.pie_chart("Consent status", figures.consent_split(db.session))
    elif name == "dealers":
        svg = charts.bars_chart(
            "Leads per dealer (top 20)", figures.leads_per_dealer(db.session)[:20]
        )
    elif name == "bounces":
        svg = charts.bounce_rate_chart(bounce_rate_per_day(db.session, days), days)
    else:  # pragma: no cover - the route admits only the names above
        abort(404)
    response = Response(svg, mimetype="image/svg+xml")
    response.headers["Cache-Control"] = "private, max-age=60"
    # pygal writes its settings into a <script> element; shown as an <img> nothing runs, and
    # opened on its own the image may use its own styles but no script at all.
    response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    return response
