"""The database and Redis as the long-running commands see them: reachable or not, and why.

`leadsvc serve`, `worker` and `relay` start against services that may be down. They say so in
one line that names the setting to check (DATABASE_URL, REDIS_URL) and the driver's own reason,
never a traceback; `worker` and `relay` then wait with a growing pause (`wait_for_services`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import redis
import sqlalchemy as sa
from flask import Flask

from leadsvc.extensions import db
from leadsvc.ops.logs import describe_error

#: Longest pause between two looks at a service that is down.
MAX_BACKOFF_SECONDS = 30.0


def database_problem(app: Flask) -> str | None:
    """Why the database cannot be used now (the driver's reason), or None."""
    try:
        with db.engine(app).connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as error:
        return describe_error(error)
    return None


def redis_problem(url: str | None) -> str | None:
    """Why Redis at `url` cannot be used now, or None (also when no Redis is configured)."""
    if not url:
        return None
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2) as client:
            client.ping()
    except redis.RedisError as error:
        return describe_error(error)
    return None


def setting_of(error: BaseException) -> str:
    """The setting to check for an error of the database or of Redis."""
    return "REDIS_URL" if isinstance(error, redis.RedisError) else "DATABASE_URL"


def unreachable(setting: str, reason: str) -> str:
    """The one line that says a service is down: the setting to check and the driver's reason."""
    service = "Redis" if setting == "REDIS_URL" else "the database"
    return f"{setting}: {service} is unreachable ({reason})"


def service_problems(app: Flask) -> list[tuple[str, str]]:
    """(setting, reason) for each of the database and Redis that cannot be used now."""
    settings = app.config["LEADSVC_SETTINGS"]
    probes: list[tuple[str, Callable[[], str | None]]] = [
        ("DATABASE_URL", lambda: database_problem(app)),
        ("REDIS_URL", lambda: redis_problem(settings.redis_url)),
    ]
    return [(name, reason) for name, probe in probes if (reason := probe()) is not None]


def next_backoff(backoff: float) -> float:
    """The pause after `backoff`: doubled, from half a second up to `MAX_BACKOFF_SECONDS`."""
    return min(MAX_BACKOFF_SECONDS, max(0.5, backoff * 2))


def wait_for_services(
    app: Flask, log: logging.Logger, who: str, stop: threading.Event | None = None
) -> bool:
    """Return once the database and Redis answer, logging one line per look while one does
    not; False if `stop` was set first."""
    stop = stop or threading.Event()
    backoff = 0.0
    while not stop.is_set():
        problems = service_problems(app)
        if not problems:
            return True
        backoff = next_backoff(backoff)
        for setting, reason in problems:
            log.warning(
                "%s: %s; trying again in %.1f s", who, unreachable(setting, reason), backoff
            )
        stop.wait(backoff)
    return False
