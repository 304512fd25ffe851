"""The second step of signing in (a TOTP code) and setting up the second factor.

After the right password, an account with a second factor is not signed in yet: the session
holds only which account passed the first step, for a few minutes, until its code is typed.
With REQUIRE_2FA an admin or compliance account without one is signed in but sent to the set-up
page by every other page until it has one (see `frame`).
"""

from __future__ import annotations

import logging

from flask import current_app, redirect, render_template, request, session, url_for
from flask_login import current_user

from leadsvc.auth.models import StaffUser
from leadsvc.auth.second_factor import (
    check_code,
    confirm_enrolment,
    needs_enrolment,
    pending_secret,
    provisioning_uri,
)
from leadsvc.console.access import actor, public, roles, safe_next, staff_from, start_fresh_session
from leadsvc.console.forms import CodeForm
from leadsvc.console.frame import blp
from leadsvc.db import utcnow
from leadsvc.extensions import db
from leadsvc.ops.logs import pseudonym
from leadsvc.request_context import client_ip_key

log = logging.getLogger(__name__)
WRONG_CODE = "The code is not right, or was used already. Please type the newest code."
LIMITED = "Too many failed sign-ins. Please wait 15 minutes and try again."
#: The session key of an account that passed the password step, and how long that lasts.
FIRST_STEP = "first_step"
FIRST_STEP_SECONDS = 300


def passed_password(user: StaffUser, target: str | None):
    """Where the password step leads: the code step, the set-up page, or the start page."""
    if user.totp_secret:
        session.clear()
        session[FIRST_STEP] = {
            "id": user.id,
            "version": user.session_version,
            "at": int(utcnow().timestamp()),
            "next": safe_next(target),
        }
        return redirect(url_for("console.sign_in_code"), code=303)
    start_fresh_session(staff_from(user))
    log.info("console sign-in", extra={"staff": pseudonym(user.email)})
    if must_enrol(user.role, False):
        return redirect(url_for("console.two_factor"), code=303)
    return redirect(safe_next(target), code=303)


def must_enrol(role: str, has_second_factor: bool) -> bool:
    settings = current_app.config["LEADSVC_SETTINGS"]
    return needs_enrolment(role, has_second_factor, settings.require_2fa)


def _first_step_account() -> StaffUser | None:
    step = session.get(FIRST_STEP)
    if not isinstance(step, dict) or utcnow().timestamp() - step.get("at", 0) > FIRST_STEP_SECONDS:
        return None
    user = db.session.get(StaffUser, step.get("id"))
    if user is None or user.disabled_at is not None or user.session_version != step["version"]:
        return None
    return user


@blp.route("/login/code", methods=["GET", "POST"])
@public
def sign_in_code():
    """The second step of signing in: the code from the authenticator app."""
    user = _first_step_account()
    if user is None:
        session.pop(FIRST_STEP, None)
        return redirect(url_for("console.login", expired="1"), code=303)
    form = CodeForm()
    message = None
    if form.validate_on_submit():
        accepted, limited = check_code(db.session, user, form.code.data, client_ip_key())
        if accepted:
            target = session[FIRST_STEP]["next"]
            start_fresh_session(staff_from(user))
            log.info("console sign-in", extra={"staff": pseudonym(user.email), "factors": 2})
            return redirect(target, code=303)
        log.info("console sign-in code refused", extra={"staff": pseudonym(user.email)})
        message = LIMITED if limited else WRONG_CODE
    status = 200 if message is None and not form.errors else 422
    return render_template("console/sign_in_code.html", form=form, message=message), status


@blp.route("/account/two-step", methods=["GET", "POST"])
@roles("admin", "compliance", "dealer")
def two_factor():
    """Set up the second factor: the secret, its otpauth URI and QR code, confirmed by a code."""
    user = db.session.get(StaffUser, current_user.id)
    form = CodeForm()
    message = None
    if user.totp_secret is None and form.validate_on_submit():
        accepted, limited = confirm_enrolment(
            db.session, actor(), user, form.code.data, client_ip_key()
        )
        if accepted:
            # The session goes on with the account's new state (no longer held at this page).
            start_fresh_session(staff_from(user))
            return redirect(url_for("console.two_factor", enrolled="1"), code=303)
        message = LIMITED if limited else WRONG_CODE
    values = {"form": form, "message": message, "enabled": user.totp_secret is not None}
    if user.totp_secret is None:
        import segno  # loaded by the few processes that ever draw an enrolment code

        secret = pending_secret(db.session, user)
        uri = provisioning_uri(user, secret)
        values.update(
            secret=secret,
            uri=uri,
            qr=segno.make(uri, error="m").svg_data_uri(scale=5, border=2),
            required=must_enrol(user.role, False),
        )
    status = 200 if message is None and not form.errors else 422
    return render_template("console/two_factor.html", section="security", **values), status


def allowed_before_enrolment() -> frozenset[str]:
    """The endpoints an account held back by REQUIRE_2FA may still open."""
    return frozenset({"console.two_factor", "console.logout", "console.static"})


@blp.before_request
def enrolment_redirect():
    """The set-up page, for an account that REQUIRE_2FA holds back (None: not held back)."""
    if (
        current_user.is_authenticated
        and request.endpoint not in allowed_before_enrolment()
        and must_enrol(current_user.role, current_user.second_factor)
    ):
        return redirect(url_for("console.two_factor"), code=303)
    return None
