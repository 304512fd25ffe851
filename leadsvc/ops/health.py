"""`GET /healthz` (the process answers) and `GET /readyz` (it can do its work)."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, current_app

from leadsvc.extensions import db

blp = Blueprint("ops", __name__)


@blp.get("/healthz")
def healthz():
    """The process is up."""
    return {"status": "ok"}


def _database() -> str:
    try:
        with db.engine().connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except sa.exc.DBAPIError:
        return "unreachable"
    return "ok"


def _redis(url: str | None) -> str:
    if not url:
        return "not configured"
    import redis

    try:
        with redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5) as client:
            client.ping()
    except redis.RedisError:
        return "unreachable"
    return "ok"


def _routing() -> str:
    from leadsvc.dealers.routing import routing_table

    try:
        table = routing_table()
    except (sa.exc.DBAPIError, RuntimeError):
        return "not loaded"
    # No dealers yet is ready: signups are taken and wait in the unassigned pool.
    return "ok" if table.version else "no dealers yet"


@blp.get("/readyz")
def readyz():
    """Database and Redis reachable, ZIP directory and routing table loaded; else 503."""
    settings = current_app.config["LEADSVC_SETTINGS"]
    checks = {"database": _database(), "redis": _redis(settings.redis_url)}
    checks["routing"] = _routing() if checks["database"] == "ok" else "not loaded"
    ready = all(value in ("ok", "not configured", "no dealers yet") for value in checks.values())
    return {"status": "ready" if ready else "unavailable", "checks": checks}, 200 if ready else 503
