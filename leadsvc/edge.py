"""The public edge: rate limits, CORS for the brand's site origins, and security headers.

Rate limits (Flask-Limiter) hold per client IP (after ProxyFix; IPv6 grouped by /64, so one
subscriber's addresses count once) and per normalised email across IPs. Their counters live in
Redis when `REDIS_URL` is set (shared by every worker); while Redis is unreachable each process
counts in memory (Flask-Limiter's in-memory fallback) rather than failing the signup.

A key function never raises: Flask-Limiter treats any error while evaluating limits as a storage
failure and lets the request through unlimited, so a body the email key cannot read (too large,
nested too deep) falls back to the client's address instead.
"""

from __future__ import annotations

import logging
import time

from flask import Flask, current_app, request
from flask_cors import CORS
from flask_limiter import Limiter
from werkzeug.exceptions import HTTPException

from leadsvc.errors import FAILURE_MESSAGE
from leadsvc.leads.email_address import EmailChecker, InvalidEmail
from leadsvc.request_context import client_ip_key

log = logging.getLogger(__name__)
#: Normalises addresses exactly as a lead's `email_key` is made (no DNS: keys must be cheap).
_ADDRESS_KEYS = EmailChecker(check_deliverability=False)

#: Routes the brand's own pages may call from the browser (the form and the ZIP lookup).
PUBLIC_API = r"/api/v1/(signups|zips/.*)"


def _submitted_email():
    """The `email` field of the JSON or form body, or None (never raises)."""
    try:
        body = request.get_json(silent=True) if request.is_json else request.form
    except (HTTPException, RecursionError, ValueError):  # too large, nested too deep, unreadable
        return None
    email = body.get("email") if isinstance(body, dict) or hasattr(body, "get") else None
    return email if isinstance(email, str) and email.strip() else None


def email_key() -> str:
    """The submitted address, normalised as the lead's key is and pseudonymised (never stored in
    clear): one person's spellings of one address (case, IDNA, Unicode forms) count once."""
    from leadsvc.ops.logs import pseudonym

    email = _submitted_email()
    if email is None:
        return "no-email:" + client_ip_key()
    try:
        key = _ADDRESS_KEYS.check(email).key
    except InvalidEmail:
        key = email.strip().lower()
    return "email:" + pseudonym(key)


def signup_ip_limit() -> str:
    return current_app.config["LEADSVC_SETTINGS"].signup_limit_per_ip


def signup_email_limit() -> str:
    return current_app.config["LEADSVC_SETTINGS"].signup_limit_per_email


LIMITER_KEY = "leadsvc.limiter"


def _taken(response) -> bool:
    return response.status_code < 400


def limit_signups(app: Flask, blueprint) -> None:
    """Both signup limits on the POST routes of `blueprint`, answered (429, Retry-After) in the
    form's failure wording. Applied to blueprints: Flask-Limiter's per-view decorators do not
    reach flask-smorest's MethodViews. Shared limits: the form and the API draw on one budget
    per address and per email (a plain limit would count each endpoint apart).

    The per-email limit counts only signups that were taken (a reply under 400): a request the
    form refuses, for a missing email, a wrong body or any field to correct, gets its own
    answer and spends nothing, so it never turns into a 429 for the next visitor behind the
    same address."""
    app.extensions[LIMITER_KEY].shared_limit(
        signup_email_limit,
        "signup-email",
        key_func=email_key,
        error_message=FAILURE_MESSAGE,
        methods=["POST"],
        deduct_when=_taken,
    )(blueprint)
    app.extensions[LIMITER_KEY].shared_limit(
        signup_ip_limit,
        "signup-ip",
        key_func=client_ip_key,
        error_message=FAILURE_MESSAGE,
        methods=["POST"],
    )(blueprint)


def _security_headers(response):
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
    if response.mimetype == "text/html":
        settings = current_app.config["LEADSVC_SETTINGS"]
        ancestors = " ".join(["'self'", *settings.site_origins])
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; form-action 'self'; base-uri 'none'; object-src 'none'; "
            f"frame-ancestors {ancestors}",
        )
    return response


def _retry_after_on_429(response):
    """A 429 tells the client when its window resets (Retry-After, in seconds); nothing else
    carries the header unless the reply set its own (a 503's "5")."""
    if response.status_code == 429 and "Retry-After" not in response.headers:
        limit = current_app.extensions[LIMITER_KEY].current_limit
        if limit is not None:
            response.headers["Retry-After"] = str(max(1, int(limit.reset_at - time.time())))
    return response


def init_app(app: Flask) -> None:
    settings = app.config["LEADSVC_SETTINGS"]
    app.config.update(
        RATELIMIT_STORAGE_URI=settings.redis_url or "memory://",
        RATELIMIT_STORAGE_OPTIONS={"socket_connect_timeout": 0.3, "socket_timeout": 0.3}
        if settings.redis_url
        else {},
        RATELIMIT_SWALLOW_ERRORS=True,
        RATELIMIT_IN_MEMORY_FALLBACK_ENABLED=True,
        RATELIMIT_KEY_PREFIX="leadsvc",
        RATELIMIT_ENABLED=settings.rate_limits_enabled,
    )
    limiter = Limiter(key_func=client_ip_key)  # one per app: its storage state is the app's
    limiter.init_app(app)
    app.extensions[LIMITER_KEY] = limiter
    app.after_request(_retry_after_on_429)
    if settings.site_origins:
        CORS(
            app,
            resources={PUBLIC_API: {"origins": list(settings.site_origins)}},
            methods=["GET", "POST"],
            allow_headers=["Content-Type"],
            max_age=3600,
        )
    app.after_request(_security_headers)
