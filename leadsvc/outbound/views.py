"""The confirm and unsubscribe pages: GET shows a button and changes nothing, POST acts.

Mail scanners and link previews fetch every link in an email, so a GET must never confirm or
unsubscribe. `POST /unsubscribe/<token>` is also RFC 8058 one-click unsubscribe: mail providers
post `List-Unsubscribe=One-Click` (form-encoded or multipart, without cookies) and get 200
with no redirect. A bad, tampered or expired token gets a page that says so.
"""

from __future__ import annotations

from flask import Blueprint, current_app, render_template
from flask.views import MethodView

from leadsvc.extensions import db
from leadsvc.leads.models import Lead
from leadsvc.outbound.subscription import confirm_lead, confirm_link_state, unsubscribe_lead
from leadsvc.outbound.tokens import ExpiredToken, InvalidToken, LinkTokens, link_tokens
from leadsvc.request_context import consent_context

pages = Blueprint("outbound", __name__, template_folder="templates")


def _tokens() -> LinkTokens:
    return link_tokens(current_app.config["LEADSVC_SETTINGS"])


def _bad_link(error: InvalidToken, action: str):
    expired = isinstance(error, ExpiredToken)
    page = render_template("outbound/bad_link.html", action=action, expired=expired)
    return page, 410 if expired else 400


def _no_store(response):
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"  # the token stays out of Referer
    return response


pages.after_request(_no_store)


def _stale_link():
    return render_template("outbound/stale_link.html"), 410


class ConfirmPage(MethodView):
    """`/confirm/<token>`: the double opt-in confirmation of the signup the link was sent for."""

    def get(self, token: str):
        try:
            lead_id, signup = _tokens().confirm_target(token)
        except InvalidToken as error:
            return _bad_link(error, "confirm")
        state = confirm_link_state(db.session.get(Lead, lead_id), signup)
        if state == "stale":
            return _stale_link()
        return render_template("outbound/confirm.html", token=token)

    def post(self, token: str):
        try:
            lead_id, signup = _tokens().confirm_target(token)
        except InvalidToken as error:
            return _bad_link(error, "confirm")
        outcome = confirm_lead(db.session, lead_id, consent_context(None), signup)
        if outcome == "missing":
            return _bad_link(InvalidToken(), "confirm")
        if outcome == "stale":
            return _stale_link()
        return render_template("outbound/confirmed.html", outcome=outcome)


class UnsubscribePage(MethodView):
    """`/unsubscribe/<token>`: the page behind the email's link, and RFC 8058 one-click."""

    def get(self, token: str):
        try:
            _tokens().unsubscribe_lead_id(token)
        except InvalidToken as error:
            return _bad_link(error, "unsubscribe")
        return render_template("outbound/unsubscribe.html", token=token)

    def post(self, token: str):
        try:
            lead_id = _tokens().unsubscribe_lead_id(token)
        except InvalidToken as error:
            return _bad_link(error, "unsubscribe")
        # The same answer whether or not the address was still subscribed, or still exists.
        unsubscribe_lead(db.session, lead_id, consent_context(None))
        return render_template("outbound/unsubscribed.html")


pages.add_url_rule("/confirm/<token>", view_func=ConfirmPage.as_view("confirm"))
pages.add_url_rule("/unsubscribe/<token>", view_func=UnsubscribePage.as_view("unsubscribe"))
