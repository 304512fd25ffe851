"""Overview for admins and compliance: signups, consent, dealers, the outbox, the ledger."""

from __future__ import annotations

from flask import Response, abort, render_template, request

from leadsvc.consent import figures
from leadsvc.consent.verifications import last_verification
from leadsvc.console.access import roles
from leadsvc.console.frame import blp
from leadsvc.deliverability.figures import bounce_rate_per_day
from leadsvc.extensions import db
from leadsvc.outbox.figures import jobs_per_hour, outbox_health
from leadsvc.signups.refusals import refusals_per_day

PERIODS = (30, 90)
CHARTS = ("signups", "campaigns", "campaign_days", "jobs", "consent", "dealers", "bounces")


def _days() -> int:
    days = request.args.get("days", "30")
    return int(days) if days.isdigit() and int(days) in PERIODS else 30


def signups_by_outcome(days: int):
    """(day, new, repeat, refused) for each of the last `days` days, oldest first."""
    refused = refusals_per_day(db.session, days)
    return [
        (day, new, repeat, refused.get(day, 0))
        for day, new, repeat in figures.signups_per_day(db.session, days)
    ]


@blp.route("/overview")
@roles("admin", "compliance")
def overview():
    """The figures, each as a chart and as a table."""
    days = _days()
    campaigns, (names, campaign_days) = figures.campaign_figures(db.session, days)
    consent, dealers = figures.lead_counts(db.session)
    return render_template(
        "console/overview.html",
        section="overview",
        days=days,
        periods=PERIODS,
        signups=signups_by_outcome(days),
        campaigns=campaigns,
        campaign_names=names,
        campaign_rows=[[day, *values] for day, values in campaign_days],
        jobs_rows=[
            [f"{hour:%Y-%m-%d %H:00}", *counts] for hour, *counts in jobs_per_hour(db.session)
        ],
        consent=consent,
        dealers=dealers,
        outbox=outbox_health(db.session),
        seal=figures.last_seal(db.session),
        verification=last_verification(db.session),
        bounces=[
            (row.day, row.sent, row.bounced, f"{row.rate:.1%}")
            for row in bounce_rate_per_day(db.session, days)
        ],
    )


def _chart(name: str, days: int) -> bytes:
    # pygal (about 12 MB) is loaded when a chart is first drawn, not in every web process.
    from leadsvc.console import charts

    if name == "signups":
        return charts.signups_chart(signups_by_outcome(days), days)
    if name == "campaigns":
        rows = figures.signups_by_campaign(db.session, days)
        return charts.bars_chart(f"New people by campaign, last {days} days", rows)
    if name == "campaign_days":
        return charts.campaigns_chart(*figures.campaigns_per_day(db.session, days), days)
    if name == "jobs":
        return charts.jobs_chart(jobs_per_hour(db.session))
    if name == "consent":
        return charts.pie_chart("Consent status", figures.consent_split(db.session))
    if name == "dealers":
        rows = figures.leads_per_dealer(db.session)[:20]
        return charts.bars_chart("Leads per dealer (top 20)", rows)
    if name == "bounces":
        return charts.bounce_rate_chart(bounce_rate_per_day(db.session, days), days)
    abort(404)


@blp.route("/overview/<name>.svg")
@roles("admin", "compliance")
def overview_chart(name: str):
    """One chart of the overview as an SVG image."""
    if name not in CHARTS:
        abort(404)
    response = Response(_chart(name, _days()), mimetype="image/svg+xml")
    response.headers["Cache-Control"] = "private, max-age=60"
    # pygal writes its settings into a <script> element; shown as an <img> nothing runs, and
    # opened on its own the image may use its own styles but no script at all.
    response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    return response
