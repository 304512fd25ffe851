"""The public edge: rate limits, CORS for the brand's site origins, and security headers.

Rate limits (Flask-Limiter) hold per client IP (after ProxyFix; IPv6 grouped by /64, so one
subscriber's addresses count once) and per normalised email across IPs. Their counters live in
Redis when `REDIS_URL` is set (shared by every worker); if Redis is unreachable the limiter
lets requests through and logs a warning rather than failing the signup.
"""

from __future__ import annotations

import logging

from flask import Flask, current_app, request
from flask_cors import CORS

from leadsvc.errors import FAILURE_MESSAGE
from leadsvc.extensions import limiter
from leadsvc.request_context import client_ip_key

log = logging.getLogger(__name__)

#: Routes the brand's own pages may call from the browser (the form and the ZIP lookup).
PUBLIC_API = r"/api/v1/(signups|zips/.*)"


def email_key() -> str:
    """The submitted address, lower-cased and pseudonymised (never stored in clear)."""
    from leadsvc.ops.logs import pseudonym

    body = request.get_json(silent=True) if request.is_json else request.form
    email = body.get("email") if isinstance(body, dict) or hasattr(body, "get") else None
    if not isinstance(email, str) or not email.strip():
        return "no-email:" + client_ip_key()
    return "email:" + pseudonym(email.strip().lower())


def signup_ip_limit() -> str:
    return current_app.config["LEADSVC_SETTINGS"].signup_limit_per_ip


def signup_email_limit() -> str:
    return current_app.config["LEADSVC_SETTINGS"].signup_limit_per_email


def limit_signups(blueprint):
    """Both signup limits on the POST routes of `blueprint`, answered (429, Retry-After) in the
    form's failure wording. Applied to blueprints: Flask-Limiter's per-view decorators do not
    reach flask-smorest's MethodViews."""
    limiter.limit(signup_email_limit, key_func=email_key, error_message=FAILURE_MESSAGE,
                  methods=["POST"], scope="signup-email")(blueprint)  # fmt: skip
    limiter.limit(signup_ip_limit, key_func=client_ip_key, error_message=FAILURE_MESSAGE,
                  methods=["POST"], scope="signup-ip")(blueprint)  # fmt: skip
    return blueprint


def _security_headers(response):
    settings = current_app.config["LEADSVC_SETTINGS"]
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
    if response.mimetype == "text/html":
        ancestors = " ".join(["'self'", *settings.site_origins])
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; form-action 'self'; base-uri 'none'; object-src 'none'; "
            f"frame-ancestors {ancestors}",
        )
    return response


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
    limiter.init_app(app)
    if settings.site_origins:
        CORS(app, resources={PUBLIC_API: {"origins": list(settings.site_origins)}},
             methods=["GET", "POST"], allow_headers=["Content-Type"], max_age=3600)  # fmt: skip
    app.after_request(_security_headers)
