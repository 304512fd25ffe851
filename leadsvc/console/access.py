"""Who is signed in, what their role may open, and the audit entry for what they change."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import timedelta

from flask import abort, current_app, g, redirect, request, session, url_for
from flask_login import LoginManager, UserMixin, current_user

from leadsvc.auth.audit import Actor, record_action
from leadsvc.auth.models import StaffUser
from leadsvc.db import utcnow
from leadsvc.extensions import db

#: A session unused this long ends; the next page asks to sign in again.
IDLE_TIMEOUT = timedelta(minutes=30)
#: However active, a session ends after this long.
SESSION_LIFETIME = timedelta(hours=8)
ROLE_NAMES = {"admin": "Admin", "compliance": "Compliance", "dealer": "Dealer"}
login_manager = LoginManager()


@dataclass
class Staff(UserMixin):
    """The signed-in account, as the console's pages need it."""

    id: int
    email: str
    role: str
    dealer_id: int | None
    session_version: int
    #: The account has a TOTP second factor set up.
    second_factor: bool = False

    def get_id(self) -> str:
        # The version ends every session of the account when its password changes or it is
        # disabled: the stored id no longer matches.
        return f"{self.id}:{self.session_version}"


def staff_from(user: StaffUser) -> Staff:
    return Staff(
        user.id,
        user.email,
        user.role,
        user.dealer_id,
        user.session_version,
        user.totp_secret is not None,
    )


@login_manager.user_loader
def _load_staff(stored_id: str) -> Staff | None:
    user_id, _, version = stored_id.partition(":")
    if not (user_id.isdigit() and version.isdigit()):
        return None
    user = db.session.get(StaffUser, int(user_id))
    if user is None or user.disabled_at is not None or user.session_version != int(version):
        return None
    return staff_from(user)


@login_manager.unauthorized_handler
def _sign_in_first():
    # A session that carried an account (ended by idleness, a password change or a disabled
    # account), or a cookie too old to be read, is an expired session, not a first visit.
    cookie = current_app.config["SESSION_COOKIE_NAME"] in request.cookies
    expired = g.get("console_session_expired") or "_user_id" in session or (cookie and not session)
    target = request.full_path if request.method == "GET" else None
    return redirect(
        url_for("console.login", next=target, expired="1" if expired else None), code=303
    )


def roles(*allowed: str):
    """The roles that may open a page; anyone else signed in gets the 403 page."""

    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            if not current_user.is_authenticated:
                return login_manager.unauthorized()
            if current_user.role not in allowed:
                abort(403)
            return view(*args, **kwargs)

        wrapper.console_roles = allowed
        return wrapper

    return decorate


def public(view):
    """A console page open without signing in (sign-in itself, the static files)."""
    view.console_roles = ()
    return view


def actor() -> Actor:
    return Actor(current_user.id, current_user.email, request.remote_addr)


def audit(action: str, target: str | None = None, detail: dict | None = None) -> None:
    """Record a state change made by the signed-in account, and commit it."""
    record_action(db.session, actor(), action, target, detail)
    db.session.commit()


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path only, never another site."""
    if target and target.startswith("/console/") and not target.startswith("//"):
        return target
    return url_for("console.home")


def start_fresh_session(staff: Staff) -> None:
    """Sign in on a new session: nothing from before survives (no fixation), new CSRF token."""
    from flask_login import login_user

    session.clear()
    login_user(staff)
    session.permanent = True
    session["seen"] = int(utcnow().timestamp())
