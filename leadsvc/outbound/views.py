"""The confirm, unsubscribe and preferences pages: GET shows a form and changes nothing, POST acts.

Mail scanners and link previews fetch every link in an email, so a GET must never confirm or
unsubscribe. `POST /unsubscribe/<token>` is also RFC 8058 one-click unsubscribe: mail providers
post `List-Unsubscribe=One-Click` (form-encoded or multipart, without cookies) and get 200
with no redirect. A bad, tampered or expired token gets a page that says so. The token in the
URL is the only credential (no cookie, no session): a page elsewhere cannot post without it.
"""

from __future__ import annotations

from flask import Blueprint, current_app, render_template, request
from flask.views import MethodView

from leadsvc.extensions import db
from leadsvc.leads.models import Lead
from leadsvc.outbound import preferences as prefs
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


def _stale_link(action: str = "confirmation", withdrawn: bool = False):
    page = render_template("outbound/stale_link.html", action=action, withdrawn=withdrawn)
    return page, 410


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


_SAVED = {
    prefs.SAVED: "Your preferences are saved.",
    prefs.UNCHANGED: "Nothing changed: your preferences are as they were.",
}


class PreferencesPage(MethodView):
    """`/preferences/<token>`: what the person gets, changed by them, or everything stopped."""

    def get(self, token: str):
        try:
            lead_id, signup = _tokens().preferences_target(token)
        except InvalidToken as error:
            return _bad_link(error, "preferences")
        state, shown = prefs.read_preferences(db.session, lead_id, signup)
        return self._page(token, state, shown)

    def post(self, token: str):
        try:
            lead_id, signup = _tokens().preferences_target(token)
        except InvalidToken as error:
            return _bad_link(error, "preferences")
        context = consent_context(None)
        if request.form.get("action") == "unsubscribe":
            outcome = prefs.unsubscribe_everything(db.session, lead_id, signup, context)
        else:
            choice = prefs.Choice(
                newsletter=request.form.get("newsletter") == "on",
                dealer_contact=request.form.get("dealer_contact") == "on",
                interests=tuple(request.form.getlist("interest")),
            )
            outcome = prefs.change_preferences(db.session, lead_id, signup, choice, context)
        if outcome == prefs.UNSUBSCRIBED:
            return render_template("outbound/unsubscribed.html")
        state, shown = prefs.read_preferences(db.session, lead_id, signup)
        return self._page(token, state, shown, _SAVED.get(outcome))

    @staticmethod
    def _page(token: str, state: str, shown, saved: str | None = None):
        if state == prefs.MISSING:
            return _bad_link(InvalidToken(), "preferences")
        if state != prefs.OPEN:
            return _stale_link("preferences", withdrawn=state == "withdrawn")
        page = render_template(
            "outbound/preferences.html",
            token=token,
            prefs=shown,
            saved=saved,
            choices=prefs.CHOICES,
            interests_label=prefs.INTERESTS_LABEL,
            unsubscribe_label=prefs.UNSUBSCRIBE_LABEL,
        )
        return page


pages.add_url_rule("/confirm/<token>", view_func=ConfirmPage.as_view("confirm"))
pages.add_url_rule("/unsubscribe/<token>", view_func=UnsubscribePage.as_view("unsubscribe"))
pages.add_url_rule("/preferences/<token>", view_func=PreferencesPage.as_view("preferences"))
