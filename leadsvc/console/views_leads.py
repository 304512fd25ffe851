"""A dealer's leads: new and all, newest first, paged; one lead; acknowledgement; downloads."""

from __future__ import annotations

from flask import Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from leadsvc.console.access import audit, roles
from leadsvc.console.forms import EmptyForm
from leadsvc.console.frame import blp
from leadsvc.dealers.adf import adf_document
from leadsvc.dealers.formats import leads_csv
from leadsvc.dealers.lead_list import recent_leads, response_figures
from leadsvc.dealers.leads import acknowledge, dealer_lead
from leadsvc.dealers.models import Dealer
from leadsvc.extensions import db

PAGE_SIZE = 50
MAX_ACK = 500


def _view_args() -> tuple[bool, int | None]:
    only_new = request.args.get("status", "new") != "all"
    older_than = request.args.get("older_than", "")
    return only_new, int(older_than) if older_than.isdigit() else None


@blp.route("/leads")
@roles("dealer")
def leads():
    """The dealer's leads, newest first."""
    only_new, older_than = _view_args()
    page = recent_leads(
        db.session,
        current_user.dealer_id,
        only_new=only_new,
        older_than=older_than,
        limit=PAGE_SIZE,
    )
    return render_template(
        "console/leads.html",
        section="leads",
        page=page,
        status="new" if only_new else "all",
        older_than=older_than,
        figures=response_figures(db.session, current_user.dealer_id),
        dealer=db.session.get(Dealer, current_user.dealer_id),
        form=EmptyForm(),
    )


@blp.route("/leads/download.<any(csv, adf):fmt>")
@roles("dealer")
def leads_download(fmt: str):
    """The page on screen as CSV or ADF XML."""
    only_new, older_than = _view_args()
    page = recent_leads(
        db.session,
        current_user.dealer_id,
        only_new=only_new,
        older_than=older_than,
        limit=PAGE_SIZE,
    )
    name = f"leads-{'new' if only_new else 'all'}"
    if fmt == "csv":
        body, mimetype = leads_csv(page.leads), "text/csv"
    else:
        dealer = db.session.get(Dealer, current_user.dealer_id)
        base_url = current_app.config["LEADSVC_SETTINGS"].public_base_url
        body, mimetype = adf_document(page.leads, dealer, base_url) or "", "application/xml"
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{name}.{fmt}"'
    return response


@blp.route("/leads/<int:lead_id>")
@roles("dealer")
def lead_detail(lead_id: int):
    """One of the dealer's leads; another dealer's lead is not found."""
    record = dealer_lead(db.session, current_user.dealer_id, lead_id)
    if record is None:
        abort(404)
    return render_template("console/lead.html", section="leads", lead=record, form=EmptyForm())


@blp.route("/leads/acknowledge", methods=["POST"])
@roles("dealer")
def leads_acknowledge():
    """Acknowledge the ticked leads (or the one lead of a detail page)."""
    wanted = [int(v) for v in request.form.getlist("lead_id") if v.isdigit()][:MAX_ACK]
    back = request.form.get("back", "")
    back = back if back.startswith("/console/leads") else url_for("console.leads")
    if not wanted:
        flash("Please tick at least one lead to acknowledge.", "failure")
        return redirect(back, code=303)
    done, _missing = acknowledge(db.session, current_user.dealer_id, wanted)
    if done:
        audit("leads.acknowledge", f"{len(done)} leads", {"lead_ids": done})
    flash(f"{len(done)} lead{'s' if len(done) != 1 else ''} acknowledged.", "success")
    return redirect(back, code=303)
