"""The public edge: rate limits, CORS for the brand's site origins, and security headers.

Rate limits (Flask-Limiter) hold per client IP (after ProxyFix; IPv6 grouped by /64, so one
subscriber's addresses count once) and per normalised email across IPs. Their counters live in
Redis when `REDIS_URL` is set (shared by every worker); if Redis is unreachable the limiter
lets requests through and logs a warning rather than failing the signup.

A key function never raises: Flask-Limiter treats any error while evaluating limits as a storage
failure and lets the request through unlimited, so a body the email key cannot read (too large,
nested too deep) falls back to the client's address instead.
"""

from __future__ import annotations

import logging

from flask import Flask, current_app, g, request
from flask_cors import CORS
from werkzeug.exceptions import HTTPException

from leadsvc.errors import FAILURE_MESSAGE
from leadsvc.extensions import limiter
from leadsvc.request_context import client_ip_key
from leadsvc.signups.email_address import EmailChecker, InvalidEmail

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


def limit_signups(blueprint):
    """Both signup limits on the POST routes of `blueprint`, answered (429, Retry-After) in the
    form's failure wording. Applied to blueprints: Flask-Limiter's per-view decorators do not
    reach flask-smorest's MethodViews. Shared limits: the form and the API draw on one budget
    per address and per email (a plain limit would count each endpoint apart)."""
    limiter.shared_limit(signup_email_limit, "signup-email", key_func=email_key,
                         error_message=FAILURE_MESSAGE, methods=["POST"])(blueprint)  # fmt: skip
    limiter.shared_limit(signup_ip_limit, "signup-ip", key_func=client_ip_key,
                         error_message=FAILURE_MESSAGE, methods=["POST"])(blueprint)  # fmt: skip
    return blueprint


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


def _note_own_retry_after(response):
    """Runs just before Flask-Limiter's header hook: keeps the reply's own Retry-After."""
    g.own_retry_after = response.headers.get("Retry-After")
    return response


def _retry_after_only_where_meant(response):
    """Runs just after Flask-Limiter's header hook, which sets Retry-After on every reply under a
    limit (to its window's reset, raising a reply's own value to that): a 202 would tell clients
    to wait a minute, and a 503's "try again in 5 s" would become 60. Only a 429 keeps the
    limiter's value; any other reply keeps its own, or none."""
    if response.status_code != 429:
        own = g.pop("own_retry_after", None)
        if own is None:
            response.headers.pop("Retry-After", None)
        else:
            response.headers["Retry-After"] = own
    return response


class _StorageFailureIsAWarning(logging.Filter):
    """Flask-Limiter logs a swallowed storage error (Redis down) as an ERROR with its traceback,
    once per request; it is an expected degradation (limits fail open), so: one WARNING line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and str(record.msg).endswith("Swallowing error"):
            error = record.exc_info[1] if record.exc_info else None
            record.msg = "rate limit storage unreachable (%s): request let through unlimited"
            record.args = (type(error).__name__ if error else "unknown error",)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        return True


def init_app(app: Flask) -> None:
    settings = app.config["LEADSVC_SETTINGS"]
    app.config.update(
        RATELIMIT_STORAGE_URI=settings.redis_url or "memory://",
        RATELIMIT_STORAGE_OPTIONS={"socket_connect_timeout": 0.3, "socket_timeout": 0.3}
        if settings.redis_url else {},
        RATELIMIT_SWALLOW_ERRORS=True,
        RATELIMIT_HEADERS_ENABLED=True,
        RATELIMIT_KEY_PREFIX="leadsvc",
        RATELIMIT_ENABLED=settings.rate_limits_enabled,
    )  # fmt: skip
    # after_request hooks run last-registered first: these two bracket the limiter's own.
    app.after_request(_retry_after_only_where_meant)
    limiter.init_app(app)
    app.after_request(_note_own_retry_after)
    if not any(isinstance(f, _StorageFailureIsAWarning) for f in limiter.logger.filters):
        limiter.logger.addFilter(_StorageFailureIsAWarning())
    if settings.site_origins:
        CORS(app, resources={PUBLIC_API: {"origins": list(settings.site_origins)}},
             methods=["GET", "POST"], allow_headers=["Content-Type"], max_age=3600)  # fmt: skip
    app.after_request(_security_headers)
