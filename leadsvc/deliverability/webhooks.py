"""`POST /webhooks/bounces/<provider>`: bounces and complaints from Amazon SES (through SNS),
SendGrid's Event Webhook and Postmark.

A provider whose settings are unset answers 404 with a plain-text message, as an unknown
provider does. Every refusal is plain text too (the providers show it in their delivery logs):
401 for an unsigned call or missing credentials, 403 for a wrong signature, a stale or replayed
call, or a topic that is not ours; 400 for a genuine call that cannot be read; 502 when Amazon
SNS cannot be reached for its certificate or to confirm a subscription (SNS tries again). A
call that was taken is answered 200 with what it did; the same call again is answered 200 and
changes nothing.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, current_app, request
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from leadsvc.deliverability.intake import BounceWebhooks, NotConfigured, take
from leadsvc.deliverability.providers import Call, Refused, Unreadable
from leadsvc.extensions import db
from leadsvc.ops.logs import describe_error

log = logging.getLogger(__name__)
#: A SendGrid batch or an SES notification with headers is far larger than a signup form.
MAX_BODY_BYTES = 1024 * 1024
EXTENSION = "leadsvc.bounce_webhooks"
NOT_CONFIGURED = "This provider's bounce webhook is not configured here."

blp = Blueprint(
    "bounce_webhooks",
    __name__,
    url_prefix="/webhooks/bounces",
    description="Bounces and complaints from email providers (signed or authenticated calls)",
)
PLAIN = {"text/plain": {"schema": {"type": "string"}}}
BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": {"type": "object"}},
        "text/plain": {"schema": {"type": "string"}},
    },
}

REFUSALS = {
    str(code): {"description": description, "content": PLAIN}
    for code, description in (
        (400, "A genuine call that cannot be read"),
        (401, "Unsigned, or without the credentials"),
        (403, "Wrongly signed, stale, replayed, or not our topic"),
        (404, "Unknown provider, or its settings are unset"),
        (502, "Amazon SNS (certificate or subscription URL) could not be reached"),
    )
}


class TakenSchema(Schema):
    """What a call did: its notifications' outcomes by name (recorded, duplicate, unmatched,
    ignored)."""

    outcomes = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)


def init_app(app: Flask) -> None:
    """The app's providers (an unusable SENDGRID_WEBHOOK_PUBLIC_KEY stops the start)."""
    app.extensions[EXTENSION] = BounceWebhooks(app.config["LEADSVC_SETTINGS"])


@blp.url_value_preprocessor
def allow_larger_bodies(_endpoint, _values) -> None:
    """Raise this blueprint's body limit; URL value preprocessors run before every
    before_request function, so before the app's body checks read the body."""
    request.max_content_length = MAX_BODY_BYTES


def plain(status: int, message: str, headers=None) -> Response:
    return Response(message + "\n", status, headers or {}, mimetype="text/plain")


def _call() -> Call:
    auth = request.authorization
    basic = auth is not None and auth.type == "basic"
    return Call(
        body=request.get_data(cache=True),
        headers=request.headers,
        username=auth.username if basic else None,
        password=auth.password if basic else None,
    )


@blp.route("/<string:provider>")
class BounceWebhook(MethodView):
    @blp.doc(requestBody=BODY, security=[], responses=REFUSALS)
    @blp.response(200, TakenSchema, description="Taken (or taken before: nothing changed)")
    def post(self, provider: str):
        """Take a provider's bounce and complaint notifications (ses, sendgrid, postmark)"""
        hooks: BounceWebhooks = current_app.extensions[EXTENSION]
        try:
            reading = hooks.read(provider, _call())
            hooks.confirm(reading)
            counts = take(db.session, hooks.settings, provider, reading.deliveries)
        except NotConfigured:
            return plain(404, NOT_CONFIGURED)
        except Refused as refused:
            log.warning("bounce webhook %s refused (%s)", provider, refused.message)
            return plain(refused.status, refused.message, refused.headers)
        except Unreadable as error:
            log.warning("bounce webhook %s: unreadable call (%s)", provider, error)
            return plain(400, f"The notification cannot be read: {error}.")
        except OSError as error:
            log.warning("bounce webhook %s: %s", provider, describe_error(error))
            return plain(502, "Amazon SNS could not be reached; try again.")
        return {"outcomes": dict(counts)}
