"""A cookie session for the console's paths only; every other path keeps no cookie at all."""

from __future__ import annotations

from flask import request
from flask.sessions import SecureCookieSessionInterface, SessionInterface

CONSOLE_PATH = "/console"


def is_console_path(path: str) -> bool:
    return path == CONSOLE_PATH or path.startswith(CONSOLE_PATH + "/")


class ConsoleSessions(SessionInterface):
    """Flask's signed-cookie session under /console/, the null session elsewhere (the form and
    the API set no cookie, and writing `flask.session` there fails loudly as before)."""

    def __init__(self) -> None:
        self.cookies = SecureCookieSessionInterface()

    def open_session(self, app, request):
        if is_console_path(request.path):
            return self.cookies.open_session(app, request)
        return self.make_null_session(app)

    def save_session(self, app, session, response) -> None:
        if is_console_path(request.path) and not self.is_null_session(session):
            self.cookies.save_session(app, session, response)
