"""The signup API (`POST /api/v1/signups`) and the form page (`GET /`, `POST /signup`).

Views parse, call `capture_signup`, and shape the reply; nothing else.
"""

from __future__ import annotations

from flask import Blueprint as PageBlueprint
from flask import render_template, request
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from marshmallow import ValidationError

from leadsvc.consent.service import active_text
from leadsvc.dealers.routing import routing_table
from leadsvc.errors import FAILURE_MESSAGE, ErrorSchema, first_messages
from leadsvc.extensions import db
from leadsvc.request_context import consent_context
from leadsvc.signups.schemas import (
    RECEIVED,
    STALE_CONSENT_TEXT,
    SignupReplySchema,
    SignupSchema,
)
from leadsvc.signups.service import Signup, SignupResult, capture_signup

api_blp = Blueprint(
    "signups", __name__, url_prefix="/api/v1", description="The newsletter form's API"
)
pages = PageBlueprint("form", __name__, template_folder="templates")

UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
FORM_FIELDS = ("first_name", "last_name", "email", "zip")


def _reply(result: SignupResult) -> dict:
    reply = {"status": "received", "message": RECEIVED}
    if result.suggestion:
        reply["suggestion"] = result.suggestion
    return reply


@api_blp.before_request
def _require_json():
    if request.method == "POST" and not request.is_json:
        abort(415, message="Please send the form as JSON (Content-Type: application/json).")


@api_blp.route("/signups")
class Signups(MethodView):
    @api_blp.arguments(SignupSchema)
    @api_blp.response(202, SignupReplySchema)
    @api_blp.alt_response(400, schema=ErrorSchema, description="The body is not valid JSON")
    @api_blp.alt_response(415, schema=ErrorSchema, description="The body is not JSON")
    @api_blp.alt_response(422, schema=ErrorSchema, description="Field errors, keyed by field")
    @api_blp.alt_response(503, schema=ErrorSchema, description="The database is unreachable")
    def post(self, data):
        """Sign a person up for the newsletter (same reply for new and known addresses)"""
        signup = Signup.from_loaded(data)
        result = capture_signup(db.session, signup, consent_context(signup.source), routing_table())
        return _reply(result)


def _form_payload(form) -> dict:
    """The HTML form's fields as the API schema expects them (only the form's own fields)."""
    payload = {key: form[key] for key in FORM_FIELDS if key in form}
    if form.get("source"):
        payload["source"] = form["source"]
    version = form.get("consent_text_version", "")
    if version:
        payload["consent_text_version"] = int(version) if version.isdigit() else version
    utm = {key: form[key] for key in UTM_KEYS if form.get(key)}
    if utm:
        payload["utm"] = utm
    return payload


def _render_form(values: dict, errors: dict | None = None, failure: str | None = None, status=200):
    text = active_text(db.session)
    return (
        render_template(
            "signups/form.html",
            consent_text=text,
            values=values,
            errors=errors or {},
            failure=failure,
            utm_keys=UTM_KEYS,
        ),
        status,
    )


def _failure(errors: dict) -> str | None:
    """The message above the button: what to do about errors no field shows, if any."""
    if isinstance(errors.get("consent_text_version"), str):
        return STALE_CONSENT_TEXT  # the page is older than the consent texts: reload it
    if set(errors) - set(FORM_FIELDS) and not set(errors) & set(FORM_FIELDS):
        return FAILURE_MESSAGE
    return None


@pages.get("/")
def form_page():
    """The "Stay In the Loop" form."""
    values = {key: request.args[key][:200] for key in UTM_KEYS if request.args.get(key)}
    values["source"] = request.base_url[:2048]
    return _render_form(values)


@pages.post("/signup")
def form_submit():
    """The form posted without JavaScript: a thank-you page, or the form again with its errors."""
    values = {key: request.form.get(key, "") for key in request.form}
    try:
        data = SignupSchema().load(_form_payload(request.form))
    except ValidationError as error:
        errors = first_messages(error.messages)
        return _render_form(values, errors=errors, failure=_failure(errors), status=422)
    signup = Signup.from_loaded(data)
    result = capture_signup(db.session, signup, consent_context(signup.source), routing_table())
    return render_template("signups/thanks.html", message=RECEIVED, suggestion=result.suggestion)
