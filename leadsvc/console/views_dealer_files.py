"""Admin: dealer and territory CSV uploads (the CLI's importer, its per-row report), and the
unassigned pool with reassignment (recorded as the admin API records it)."""

from __future__ import annotations

import sqlalchemy as sa
from flask import flash, redirect, render_template, request, url_for
from wtforms.fields import SelectChoice

from leadsvc.console.access import audit, roles
from leadsvc.console.forms import LeadDealerForm, UploadForm
from leadsvc.console.frame import blp
from leadsvc.dealers import directory
from leadsvc.dealers.leads import reassign_lead, route_again, unassigned_leads
from leadsvc.dealers.models import Dealer
from leadsvc.dealers.routing import routing_table
from leadsvc.extensions import db
from leadsvc.input_bounds import body_limit

#: Uploads may be this large (the public form keeps its own small MAX_CONTENT_LENGTH).
UPLOAD_MAX_BYTES = 5 * 1024 * 1024
#: Rows of a report shown besides the refused ones (a large file's report stays readable).
REPORT_ROWS = 200
PAGE_SIZE = 50
MAX_PICKED = PAGE_SIZE
UPLOADS = {
    "dealers": (directory.import_dealers, "dealers.import", "Import dealers"),
    "territories": (directory.assign_territories, "territories.import", "Upload territories"),
}


@blp.route("/dealers/upload/<any(dealers, territories):kind>", methods=["GET", "POST"])
@roles("admin")
@body_limit(UPLOAD_MAX_BYTES)
def dealer_upload(kind: str):
    """Upload a dealer or territory CSV: every row checked, then applied (or nothing is)."""
    action, audit_action, title = UPLOADS[kind]
    form = UploadForm()
    report = None
    if form.validate_on_submit():
        upload = form.file.data
        try:
            text = directory.decode_csv(upload.read())
            report = action(db.session, text, partial=form.partial.data)
        except directory.ImportFileError as error:
            db.session.rollback()
            form.file.errors = [str(error)]
        else:
            counts = {
                name: report.count(name)
                for name in ("created", "updated", "unchanged", "assigned", "rejected")
                if report.count(name)
            }
            audit(
                audit_action,
                (upload.filename or "upload.csv")[:200],
                {
                    "applied": report.applied,
                    **counts,
                    "routing_version": report.routes.version if report.routes else None,
                },
            )
    failed = bool(form.errors) or (report is not None and not report.applied)
    return render_template(
        "console/dealer_upload.html",
        section="dealers",
        kind=kind,
        title=title,
        form=form,
        report=report,
        shown=_shown_rows(report),
        limit_mb=UPLOAD_MAX_BYTES // (1024 * 1024),
    ), 422 if failed else 200


def _shown_rows(report):
    if report is None:
        return []
    if len(report.rows) <= REPORT_ROWS:
        return report.rows
    rows = [row for row in report.rows if row.action == "rejected"]
    return rows + [row for row in report.rows if row.action != "rejected"][:REPORT_ROWS]


def _dealer_choices() -> list[SelectChoice]:
    rows = db.session.execute(
        sa.select(Dealer.code, Dealer.name, Dealer.city, Dealer.state)
        .where(Dealer.active)
        .order_by(Dealer.code)
    )
    return [
        SelectChoice(code, f"{code}: {name}, {city} {state}") for code, name, city, state in rows
    ]


@blp.route("/unassigned")
@roles("admin")
def unassigned():
    """Leads no dealer receives, oldest first, with where their ZIP routes now."""
    after = request.args.get("after", "")
    leads, last = unassigned_leads(
        db.session, after=int(after) if after.isdigit() else None, limit=PAGE_SIZE
    )
    table = routing_table()
    routes = {
        lead["id"]: table.route_for_zip(lead["zip"]) if lead["zip"] else None for lead in leads
    }
    form = LeadDealerForm()
    form.dealer_code.choices = _dealer_choices()
    return render_template(
        "console/unassigned.html",
        section="unassigned",
        leads=leads,
        routes=routes,
        last=last,
        after=after,
        form=form,
    )


@blp.route("/unassigned/reassign", methods=["POST"])
@roles("admin")
def unassigned_reassign():
    """Give the ticked leads to the chosen dealer, or to the dealer their ZIP routes to now."""
    form = LeadDealerForm()
    form.dealer_code.choices = _dealer_choices()
    picked = [int(v) for v in request.form.getlist("lead_id") if v.isdigit()][:MAX_PICKED]
    routing = request.form.get("how") == "route"
    back = url_for("console.unassigned")
    if not routing and not form.validate_on_submit():
        flash("Please choose an active dealer.", "failure")
        return redirect(back, code=303)
    if not picked:
        flash("Please tick at least one lead.", "failure")
        return redirect(back, code=303)
    moved, refused = [], []
    for lead_id in picked:
        try:
            if routing:
                lead = route_again(db.session, lead_id)
            else:
                lead = reassign_lead(db.session, lead_id, form.dealer_code.data)
        except (LookupError, ValueError) as error:
            db.session.rollback()
            refused.append(f"lead {lead_id}: {error}")
        else:
            moved.append((lead.id, lead.dealer_id))
    if moved:
        audit(
            "lead.reassign",
            f"{len(moved)} leads",
            {
                "lead_ids": [lead_id for lead_id, _ in moved],
                "how": "routing" if routing else "chosen",
                "dealer_code": None if routing else form.dealer_code.data,
            },
        )
        flash(f"{len(moved)} lead{'' if len(moved) == 1 else 's'} reassigned.", "success")
    if refused:
        flash("Not moved: " + "; ".join(refused) + ".", "failure")
    return redirect(back, code=303)
