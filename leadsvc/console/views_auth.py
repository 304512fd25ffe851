"""Sign-in, sign-out and the landing page of each role."""

from __future__ import annotations

import logging

from flask import redirect, render_template, request, url_for
from flask_login import current_user, logout_user

from leadsvc.auth.users import sign_in
from leadsvc.console.access import public, roles
from leadsvc.console.forms import EmptyForm, SignInForm
from leadsvc.console.frame import blp
from leadsvc.console.views_two_factor import LIMITED, passed_password
from leadsvc.extensions import db
from leadsvc.ops.logs import pseudonym
from leadsvc.request_context import client_ip_key

log = logging.getLogger(__name__)
REFUSED = "The email address or password is not right. Please try again."
HOME_BY_ROLE = {
    "dealer": "console.leads",
    "compliance": "console.overview",
    "admin": "console.overview",
}


@blp.route("/login", methods=["GET", "POST"])
@public
def login():
    """Sign in with email and password."""
    form = SignInForm()
    message = None
    if form.validate_on_submit():
        result = sign_in(db.session, form.email.data, form.password.data, client_ip_key())
        if result.user is not None:
            return passed_password(result.user, request.args.get("next"))
        log.info(
            "console sign-in refused",
            extra={"staff": pseudonym(form.email.data), "limited": result.limited},
        )
        message = LIMITED if result.limited else REFUSED
    expired = request.args.get("expired") == "1" and request.method == "GET"
    status = 200 if message is None and not form.errors else 422
    return render_template(
        "console/login.html", form=form, message=message, expired=expired
    ), status


@blp.route("/logout", methods=["POST"])
@public
def logout():
    """Sign out: the session is emptied and its cookie replaced."""
    logout_user()
    from flask import session

    session.clear()
    return redirect(url_for("console.login", signed_out="1"), code=303)


@blp.route("/")
@roles("admin", "compliance", "dealer")
def home():
    return redirect(url_for(HOME_BY_ROLE[current_user.role]))


def sign_out_form() -> EmptyForm:
    return EmptyForm()
