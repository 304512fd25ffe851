"""The console's blueprint and what every console request goes through: CSRF on each post, the
idle timeout, a declared role on every page, and clear pages for the usual refusals."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, g, render_template, session
from flask_login import current_user, logout_user
from flask_wtf.csrf import CSRFError

from leadsvc.console.access import IDLE_TIMEOUT, ROLE_NAMES
from leadsvc.db import utcnow

blp = Blueprint(
    "console",
    __name__,
    url_prefix="/console",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)


@blp.before_request
def _guard():
    view = current_app.view_functions.get(_endpoint())
    if (
        view is not None
        and getattr(view, "console_roles", None) is None
        and _endpoint() != ("console.static")
    ):
        abort(403)  # a page that declares no roles is open to nobody
    _end_idle_session()
    if _endpoint() != "console.static":
        current_app.extensions["csrf"].protect()


def _endpoint() -> str:
    from flask import request

    return request.endpoint or ""


def _end_idle_session() -> None:
    now = int(utcnow().timestamp())
    if "_user_id" in session:
        seen = session.get("seen", now)
        if now - seen > IDLE_TIMEOUT.total_seconds():
            logout_user()
            session.clear()
            g.console_session_expired = True
            return
        if now - seen > 60:  # refresh at most once a minute: fewer cookie rewrites
            session["seen"] = now
        session.setdefault("seen", now)


@blp.context_processor
def _page_globals():
    return {"role_names": ROLE_NAMES, "staff": current_user}


def _refusal(template: str, status: int, **values):
    return render_template(f"console/{template}", **values), status


@blp.errorhandler(CSRFError)
def _csrf_failed(error):
    return _refusal("csrf.html", 400)


@blp.errorhandler(403)
def _forbidden(error):
    return _refusal("forbidden.html", 403)


@blp.errorhandler(404)
def _not_found(error):
    return _refusal("not_found.html", 404, error_code=404)


@blp.errorhandler(405)
def _wrong_method(error):
    return _refusal("not_found.html", 405, error_code=405)


def unrouted_error(error):
    """The console's 404 or 405 page for a URL under /console/ that no console route took (the
    blueprint's own handlers see only the errors of its routes)."""
    values = {**_page_globals(), "error_code": error.code}
    return render_template("console/not_found.html", **values), error.code


@blp.errorhandler(413)
def _too_large(error):
    return _refusal("too_large.html", 413)
