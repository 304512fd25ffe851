"""The signup API (`POST /api/v1/signups`) and the form page (`GET /`, `POST /signup`).

Views parse, call `capture_signup`, and shape the reply; nothing else.
"""

from __future__ import annotations

import json
import logging

from flask import Blueprint as PageBlueprint
from flask import current_app, g, render_template, request
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from marshmallow import ValidationError
from sqlalchemy.exc import DBAPIError

from leadsvc.consent.service import active_text
from leadsvc.dealers.routing import routing_table
from leadsvc.errors import FAILURE_MESSAGE, ErrorSchema, first_messages
from leadsvc.extensions import db
from leadsvc.input_bounds import without_controls
from leadsvc.ops.logs import describe_error
from leadsvc.ops.metrics import count_signup
from leadsvc.request_context import consent_context
from leadsvc.signups.abuse import HONEYPOT_FIELD, TOKEN_FIELD, bot_reason, form_token
from leadsvc.signups.refusals import RECORDED, record_refusal
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
BOT_FIELDS = (HONEYPOT_FIELD, TOKEN_FIELD)
#: /metrics outcome of a signup POST by reply status (bots are counted in the view).
SIGNUP_OUTCOMES = {
    **dict.fromkeys((200, 202), "accepted"),
    **dict.fromkeys((400, 413, 415, 422), "invalid"),
    429: "rate_limited",
    503: "unavailable",
}
log = logging.getLogger(__name__)
#: One schema instance for every request (loading keeps no state on it; building one per
#: request, as a schema class given to webargs would, deep-copies every field).
SIGNUP_SCHEMA = SignupSchema()


#: The reply to most signups (no suggestion), serialized once by its schema.
RECEIVED_JSON = json.dumps(SignupReplySchema().dump({"status": "received", "message": RECEIVED}))


def _reply(result: SignupResult | None):
    """The reply: a suggestion goes through the schema; the usual reply is sent as made once."""
    if result is not None and result.suggestion:
        return {"status": "received", "message": RECEIVED, "suggestion": result.suggestion}
    return current_app.response_class(RECEIVED_JSON, status=202, mimetype="application/json")


#: The types a browser posts a form as (anything else to /signup is a client's mistake).
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
JSON_ONLY = "Please send the form as JSON (Content-Type: application/json)."
FORM_ONLY = (
    "Please send the form as form fields (Content-Type: application/x-www-form-urlencoded); "
    "the JSON API is /api/v1/signups."
)


@api_blp.before_request
def _require_json():
    if request.method == "POST" and not request.is_json:
        abort(415, message=JSON_ONLY)


@pages.before_request
def _require_form():
    """A body the form cannot have sent gets 415, not the thank-you page a bot gets: it has no
    fields Flask would read, so it would otherwise pass for a bot and be dropped unanswered."""
    if request.method == "POST" and request.mimetype not in FORM_TYPES:
        abort(415, message=FORM_ONLY)


def _bot(data: dict, *, token_required: bool) -> bool:
    """Drop the anti-bot fields from `data`; True (and counted) when they show a bot."""
    settings = current_app.config["LEADSVC_SETTINGS"]
    reason = bot_reason(
        settings.secret_key,
        data.pop(HONEYPOT_FIELD, None),
        data.pop(TOKEN_FIELD, None),
        min_seconds=settings.min_fill_seconds,
        token_required=token_required,
    )
    if reason:
        g.signup_outcome = "bot"
        log.info("signup refused as a bot", extra={"reason": reason})
    return reason is not None


def _count_outcome(response):
    """Signups accepted or refused, by reason, for /metrics."""
    if request.method == "POST":
        outcome = g.pop("signup_outcome", None) or SIGNUP_OUTCOMES.get(response.status_code)
        if outcome:
            count_signup(outcome)
        if outcome in RECORDED:
            _record_refusal(outcome)
    return response


def _record_refusal(outcome: str) -> None:
    """Today's count of refused signups (the overview's chart); the reply stands either way."""
    try:
        record_refusal(db.session, outcome)
    except DBAPIError as error:
        db.session.rollback()
        log.warning("refused signup not counted: %s", describe_error(error))


api_blp.after_request(_count_outcome)
pages.after_request(_count_outcome)


@api_blp.route("/signups")
class Signups(MethodView):
    @api_blp.arguments(SIGNUP_SCHEMA)
    @api_blp.response(202, SignupReplySchema)
    @api_blp.alt_response(400, schema=ErrorSchema, description="The body is not valid JSON")
    @api_blp.alt_response(415, schema=ErrorSchema, description="The body is not JSON")
    @api_blp.alt_response(422, schema=ErrorSchema, description="Field errors, keyed by field")
    @api_blp.alt_response(
        429,
        schema=ErrorSchema,
        description="Too many signups; see Retry-After",
        headers={"Retry-After": {"schema": {"type": "integer"}}},
    )
    @api_blp.alt_response(503, schema=ErrorSchema, description="The database is unreachable")
    def post(self, data):
        """Sign a person up for the newsletter (same reply for new and known addresses)"""
        if _bot(data, token_required=False):
            return _reply(None)
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
            form_token=form_token(current_app.config["SECRET_KEY"]),
            honeypot_field=HONEYPOT_FIELD,
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
    # UTM values from the link, cleaned so that a stray control character cannot make every
    # submit of the page fail.
    utm = {key: without_controls(request.args.get(key), 200) for key in UTM_KEYS}
    values = {key: value for key, value in utm.items() if value}
    values["source"] = request.base_url[:2048]
    return _render_form(values)


@pages.post("/signup")
def form_submit():
    """The form posted without JavaScript: a thank-you page, or the form again with its errors."""
    values = {key: request.form.get(key, "") for key in request.form if key not in BOT_FIELDS}
    if _bot({key: request.form.get(key) for key in BOT_FIELDS}, token_required=True):
        return render_template("signups/thanks.html", message=RECEIVED, suggestion=None)
    try:
        data = SIGNUP_SCHEMA.load(_form_payload(request.form))
    except ValidationError as error:
        errors = first_messages(error.messages)
        return _render_form(values, errors=errors, failure=_failure(errors), status=422)
    signup = Signup.from_loaded(data)
    result = capture_signup(db.session, signup, consent_context(signup.source), routing_table())
    return render_template("signups/thanks.html", message=RECEIVED, suggestion=result.suggestion)
