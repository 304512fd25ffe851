"""Compliance: look a person up, erase them, consent texts, the export, the ledger."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from flask import Response, flash, redirect, render_template, request, stream_with_context, url_for
from flask_login import current_user

from leadsvc.consent.export import stream_export
from leadsvc.consent.figures import last_seal
from leadsvc.consent.service import list_texts, publish_text
from leadsvc.consent.subjects import erase_subject, lookup_subject
from leadsvc.consent.verifications import (
    last_verification,
    pending_verification,
    request_verification,
)
from leadsvc.console.access import audit, roles
from leadsvc.console.forms import ConsentTextForm, EmptyForm, ErasureForm, ExportForm, LookupForm
from leadsvc.console.frame import blp
from leadsvc.extensions import db
from leadsvc.jobs.maintenance import start_verification
from leadsvc.ops.logs import pseudonym
from leadsvc.request_context import consent_context

MEDIA = {"csv": "text/csv", "jsonl": "application/x-ndjson"}


@blp.route("/people")
@roles("compliance")
def people():
    """Look a person up by email: lead, consent events, emails, dealer notices."""
    form = LookupForm(request.args)
    subject = None
    if request.args and form.validate():
        subject = lookup_subject(db.session, form.email.data)
    texts = {t.version: t for t in list_texts(db.session)}
    erase = ErasureForm(formdata=None, email=form.email.data) if subject else None
    status = 422 if request.args and form.errors else 200
    return render_template(
        "console/people.html",
        section="people",
        form=form,
        subject=subject,
        texts=texts,
        erase=erase,
    ), status


@blp.route("/people/erase", methods=["POST"])
@roles("compliance")
def erase():
    """Erase a person once the address is typed again."""
    form = ErasureForm()
    if not form.validate():
        subject = lookup_subject(db.session, form.email.data or "") if form.email.data else None
        texts = {t.version: t for t in list_texts(db.session)}
        lookup = LookupForm(formdata=None, email=form.email.data)
        return render_template(
            "console/people.html",
            section="people",
            form=lookup,
            subject=subject,
            texts=texts,
            erase=form,
        ), 422
    report = erase_subject(db.session, form.email.data, consent_context(None))
    audit(
        "person.erase",
        f"subject {report.subject_hash[:16]}",
        {
            "lead_id": report.lead_id,
            "dealers_notified": report.dealers_notified,
            "already_erased": report.already_erased,
            "email_pseudonym": pseudonym(form.email.data),
        },
    )
    return render_template("console/erased.html", section="people", report=report)


@blp.route("/texts", methods=["GET", "POST"])
@roles("compliance")
def texts():
    """Consent text versions; preview, then publish a new one."""
    form = ConsentTextForm()
    preview = None
    if form.validate_on_submit():
        if not form.publish.data:
            preview = form.text.data.strip()
        else:
            try:
                text = publish_text(db.session, form.text.data)
            except ValueError as error:
                db.session.rollback()
                form.text.errors.append(str(error).capitalize() + ".")
            else:
                audit("consent_text.publish", f"version {text.version}")
                flash(f"Version {text.version} is published and active.", "success")
                return redirect(url_for("console.texts"), code=303)
    status = 422 if form.errors else 200
    versions = list(reversed(list_texts(db.session)))
    return render_template(
        "console/texts.html", section="texts", form=form, preview=preview, versions=versions
    ), status


@blp.route("/export", methods=["GET", "POST"])
@roles("compliance")
def export():
    """The consent log for a date range, streamed as CSV or JSON lines."""
    form = ExportForm()
    if request.method == "GET":
        today = datetime.now(UTC).date()
        form.start.data = form.start.data or today - timedelta(days=30)
        form.end.data = form.end.data or today
    if form.validate_on_submit():
        start = datetime.combine(form.start.data, time.min, UTC)
        end = datetime.combine(form.end.data + timedelta(days=1), time.min, UTC)
        fmt = form.format.data
        audit("consent.export", f"{form.start.data} to {form.end.data}", {"format": fmt})
        actor = f"console:{current_user.email}"
        chunks = stream_export(db.engine(), fmt, start, end, actor)
        response = Response(stream_with_context(chunks), mimetype=MEDIA[fmt])
        name = f"consent-{form.start.data}-{form.end.data}.{fmt}"
        response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
        return response
    status = 422 if form.errors else 200
    return render_template("console/export.html", section="export", form=form), status


@blp.route("/ledger", methods=["GET", "POST"])
@roles("compliance")
def ledger():
    """The ledger's last seal and verification; a new verification starts as a job."""
    form = EmptyForm()
    if form.validate_on_submit():
        run, created = request_verification(db.session, f"console:{current_user.email}")
        if not created:
            flash("A verification is already running; its result will show here.", "failure")
        elif start_verification(db.session, run):
            audit("ledger.verify", f"run {run.id}")
            flash(
                "The verification has started. Its result will show here when it is done.",
                "success",
            )
        else:
            flash(
                "The verification could not be started. Please try again in a few minutes.",
                "failure",
            )
        return redirect(url_for("console.ledger"), code=303)
    return render_template(
        "console/ledger.html",
        section="ledger",
        form=form,
        seal=last_seal(db.session),
        last=last_verification(db.session),
        pending=pending_verification(db.session),
    )
