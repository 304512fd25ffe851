"""Telling people from bots at the signup door: a honeypot field and a minimum fill time.

The form carries a field hidden by CSS (`website`) that people leave empty, and a signed render
time (`form_token`); a submission that fills the honeypot, or comes back faster than a person
could type, is a bot. Bots get the same "received" reply as a person, and nothing is stored or
sent. The JSON API checks the same fields when the caller sends them (the page's own script
does); other API callers are held by the rate limits.
"""

from __future__ import annotations

import time

from itsdangerous import BadSignature, URLSafeSerializer

HONEYPOT_FIELD = "website"
TOKEN_FIELD = "form_token"
_SALT = "leadsvc.signup-form"


def form_token(secret_key: str, now: float | None = None) -> str:
    """A signed render time for the form (no expiry: a tab left open for days is still a person)."""
    return URLSafeSerializer(secret_key, salt=_SALT).dumps(round(now or time.time(), 3))


def bot_reason(
    secret_key: str,
    honeypot: str | None,
    token: str | None,
    *,
    min_seconds: float,
    token_required: bool,
    now: float | None = None,
) -> str | None:
    """Why this submission is a bot ("honeypot", "too_fast", "bad_token"), or None for a person."""
    if honeypot:
        return "honeypot"
    if not token:
        return "bad_token" if token_required else None
    try:
        rendered = float(URLSafeSerializer(secret_key, salt=_SALT).loads(token))
    except (BadSignature, TypeError, ValueError):
        return "bad_token"
    if (now or time.time()) - rendered < min_seconds:
        return "too_fast"
    return None
