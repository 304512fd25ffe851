"""Admin: the dealer directory. Search and list (with follow-up figures), create and edit (the
CSV import's checks and words), deactivate after a preview of where the leads go, reactivate."""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, url_for

from leadsvc.console.access import audit, roles
from leadsvc.console.forms import DealerForm, DealerSearchForm, EmptyForm
from leadsvc.console.frame import blp
from leadsvc.dealers.directory import deactivate_dealer
from leadsvc.dealers.management import (
    DealerExists,
    deactivation_preview,
    dealer_by_code,
    dealer_page,
    reactivate_dealer,
    save_dealer,
)
from leadsvc.extensions import db
from leadsvc.followup.calendars import target_hours
from leadsvc.followup.figures import dealer_figures

PAGE_SIZE = 50
#: The import's messages name the column first ("missing name", "phone '1' is not ..."): the
#: message goes next to that field. Anything else stands above the form.
_FIELD_WORDS = {"zip": "zip", "give": "latitude", "opening": "opening_hours"}


def _field_of(reason: str, form: DealerForm) -> str | None:
    words = reason.split()
    word = words[1] if words[:1] == ["missing"] and len(words) > 1 else words[0] if words else ""
    name = _FIELD_WORDS.get(word.lower(), word)
    return name if name in form and name != "csrf_token" else None


@blp.route("/dealers")
@roles("admin")
def dealers():
    """The dealers matching a search, a page at a time, with their follow-up figures."""
    form = DealerSearchForm(request.args)
    query = (form.q.data or "").strip() if form.validate() else ""
    page_number = request.args.get("page", "1")
    page = dealer_page(
        db.session,
        query,
        int(page_number) if page_number.isdigit() else 1,
        PAGE_SIZE,
    )
    settings = current_app.config["LEADSVC_SETTINGS"]
    return render_template(
        "console/dealers.html",
        section="dealers",
        form=form,
        query=query,
        page=page,
        figures=dealer_figures(db.session, [d.id for d in page.dealers]),
        targets={d.id: target_hours(settings, d) for d in page.dealers},
    )


def _save(form: DealerForm, creating: bool, code: str):
    """Save the form through the import; returns the outcome or None (errors put on the form)."""
    row = form.row()
    row["code"] = row["code"] if creating else code
    try:
        report = save_dealer(db.session, row, creating=creating)
    except DealerExists as error:
        db.session.rollback()
        form.code.errors = [str(error)]
        return None
    outcome = report.rows[0]
    if not report.applied:
        field = _field_of(outcome.reason or "", form)
        if field is None:
            form.form_errors.append(outcome.reason)
        else:
            form[field].errors = [outcome.reason]
        return None
    return outcome


@blp.route("/dealers/new", methods=["GET", "POST"])
@roles("admin")
def dealer_new():
    """Create a dealer."""
    form = DealerForm()
    if form.validate_on_submit():
        outcome = _save(form, True, "")
        if outcome is not None:
            audit("dealer.create", outcome.key, {"routing": outcome.action})
            flash(f"Dealer {outcome.key} is created.", "success")
            return redirect(url_for("console.dealers", q=outcome.key), code=303)
    status = 422 if form.errors or form.form_errors else 200
    return render_template(
        "console/dealer_form.html", section="dealers", form=form, dealer=None
    ), status


def _form_values(dealer) -> dict:
    explicit = dealer.coordinates_from == "explicit"
    return {
        "code": dealer.code,
        "name": dealer.name,
        "street": dealer.street,
        "city": dealer.city,
        "state": dealer.state,
        "zip": dealer.zip5,
        "phone": dealer.phone,
        "lead_email": dealer.lead_email,
        "webhook_url": dealer.webhook_url or "",
        "latitude": f"{dealer.latitude:g}" if explicit else "",
        "longitude": f"{dealer.longitude:g}" if explicit else "",
        "response_hours": f"{dealer.response_hours:g}" if dealer.response_hours else "",
        "opening_hours": dealer.opening_hours or "",
        "time_zone": dealer.time_zone or "",
    }


@blp.route("/dealers/<code>/edit", methods=["GET", "POST"])
@roles("admin")
def dealer_edit(code: str):
    """Edit a dealer (its code stays)."""
    dealer = dealer_by_code(db.session, code) or abort(404)
    form = DealerForm(data=_form_values(dealer)) if request.method == "GET" else DealerForm()
    if form.validate_on_submit():
        outcome = _save(form, False, dealer.code)
        if outcome is not None:
            if outcome.action != "unchanged":
                audit("dealer.update", outcome.key)
            flash(f"Dealer {outcome.key} is {outcome.action}.", "success")
            return redirect(url_for("console.dealers", q=outcome.key), code=303)
    status = 422 if form.errors or form.form_errors else 200
    dealer = dealer_by_code(db.session, code)
    return render_template(
        "console/dealer_form.html", section="dealers", form=form, dealer=dealer
    ), status


@blp.route("/dealers/<code>/deactivate", methods=["GET", "POST"])
@roles("admin")
def dealer_deactivate(code: str):
    """Show how many leads would move and where; deactivate once confirmed."""
    dealer = dealer_by_code(db.session, code) or abort(404)
    form = EmptyForm()
    if not dealer.active:
        flash(f"Dealer {dealer.code} is already inactive.", "failure")
        return redirect(url_for("console.dealers", q=dealer.code), code=303)
    if form.validate_on_submit():
        report = deactivate_dealer(db.session, dealer.code)
        audit(
            "dealer.deactivate",
            report.code,
            {"moved_leads": report.moved_leads, "routing_version": report.routes.version},
        )
        moved = f"{report.moved_leads} lead{'' if report.moved_leads == 1 else 's'}"
        flash(f"Dealer {report.code} is deactivated; {moved} moved.", "success")
        return redirect(url_for("console.dealers", q=report.code), code=303)
    preview = deactivation_preview(db.session, dealer.code)
    return render_template(
        "console/deactivate.html", section="dealers", dealer=dealer, preview=preview, form=form
    )


@blp.route("/dealers/<code>/reactivate", methods=["POST"])
@roles("admin")
def dealer_reactivate(code: str):
    """Make an inactive dealer active again."""
    dealer = dealer_by_code(db.session, code) or abort(404)
    if EmptyForm().validate_on_submit():
        routes = reactivate_dealer(db.session, dealer.code)
        if routes is None:
            flash(f"Dealer {dealer.code} is already active.", "failure")
        else:
            audit("dealer.reactivate", dealer.code, {"routing_version": routes.version})
            flash(f"Dealer {dealer.code} is active again.", "success")
    return redirect(url_for("console.dealers", q=dealer.code), code=303)
