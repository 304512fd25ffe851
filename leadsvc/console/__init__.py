"""The staff console: server-rendered pages under /console/ for admins, compliance and dealers.

`init_app` sets up what the pages need (a cookie session under /console/ only, Flask-Login,
CSRF tokens); `blueprint()` is the pages themselves. The pages call the domain services and hold
no business rules of their own.
"""

from __future__ import annotations

from flask import Flask
from flask_wtf.csrf import CSRFProtect

from leadsvc.console.access import SESSION_LIFETIME, login_manager
from leadsvc.console.frame import unrouted_error
from leadsvc.console.sessions import CONSOLE_PATH, ConsoleSessions
from leadsvc.errors import register_section_pages

csrf = CSRFProtect()


def init_app(app: Flask) -> None:
    settings = app.config["LEADSVC_SETTINGS"]
    app.config.update(
        SESSION_COOKIE_NAME="leadsvc_console",
        SESSION_COOKIE_PATH=CONSOLE_PATH,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.public_base_url.startswith("https://"),
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
        # Checked by the console's own pages only: the form and the API take no cookie.
        WTF_CSRF_CHECK_DEFAULT=False,
        # A token lives as long as its session (which ends when idle).
        WTF_CSRF_TIME_LIMIT=None,
    )
    app.session_interface = ConsoleSessions()
    login_manager.init_app(app)
    csrf.init_app(app)
    register_section_pages(app, CONSOLE_PATH + "/", unrouted_error)


def blueprint():
    """The console's pages (imported here: they need every domain package)."""
    from leadsvc.console.pages import blp

    return blp
