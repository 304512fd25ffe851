"""API keys and roles: who may call the dealer, compliance and admin APIs.

Views declare the roles they accept with `@requires(role, ...)`; the caller's `Principal` is then
in `flask.g.principal`. A missing or bad key answers 401 with `WWW-Authenticate: Bearer`, a valid
key of another role 403, both in the API's one error shape.
"""

from __future__ import annotations

import functools

from flask import g, request
from flask_smorest import abort

from leadsvc.auth.keys import Principal, authenticate
from leadsvc.errors import ErrorSchema

SECURITY_SCHEME = "bearerAuth"
UNAUTHORIZED = "Please send a valid API key: Authorization: Bearer <key>."
FORBIDDEN = "This API key may not use this endpoint."


def current_principal() -> Principal:
    return g.principal


def requires(*roles: str):
    """Let through only requests with a valid key of one of `roles`."""

    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            from leadsvc.extensions import db

            scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
            principal = None
            if scheme.lower() == "bearer" and presented.strip():
                principal = authenticate(db.session, presented.strip())
            if principal is None:
                abort(
                    401,
                    message=UNAUTHORIZED,
                    headers={"WWW-Authenticate": 'Bearer realm="leadsvc"'},
                )
            if principal.role not in roles:
                abort(403, message=FORBIDDEN)
            g.principal = principal
            return view(*args, **kwargs)

        wrapper._leadsvc_roles = roles
        return wrapper

    return decorate


def register_security_scheme(api) -> None:
    """Declare the bearer scheme in the OpenAPI document."""
    api.spec.components.security_scheme(
        SECURITY_SCHEME,
        {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key from `leadsvc keys create`.",
        },
    )


def keyed(blp):
    """Document a keyed operation of `blp` in the OpenAPI: the bearer key it needs, and the
    401 (missing or bad key) and 403 (a key of another role) it may answer."""

    def decorate(view):
        view = blp.alt_response(401, schema=ErrorSchema, description="Missing or bad API key")(view)
        view = blp.alt_response(403, schema=ErrorSchema, description="Key of another role")(view)
        return blp.doc(security=[{SECURITY_SCHEME: []}])(view)

    return decorate
