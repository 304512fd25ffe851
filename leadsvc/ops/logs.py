"""JSON logs, one object per line, each carrying the request id.

Nothing personal is logged: code logs ids and outcomes, never names or addresses, and where a
log line must correlate a person it uses `pseudonym()` (a keyed hash). The formatter also masks
anything that looks like an email address in case a third-party library logs one, wherever it
sits in the record (message, extra fields of any type).

Each request gets one line of its own (`request_line`: method, route pattern, status, duration,
request id). The route pattern, never the path: paths carry link tokens and query strings. The
development server's own access lines (werkzeug: the raw path, no request id) are turned off.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import sys
from datetime import UTC, datetime

from flask import g, has_request_context

EMAIL_LIKE = re.compile(r"[^\s@<>\"']+@[^\s@<>\"']+\.[^\s@<>\"']+")
_ADDRESS = re.compile(r"[^\s<>\"']+@[^\s<>\"']+")
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_pseudonym_key = b"leadsvc"
_requests = logging.getLogger("leadsvc.requests")
#: Probes and scrapes, logged at DEBUG.
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})


def pseudonym(value: str) -> str:
    """A stable keyed hash of a personal value, for correlating log lines without the value."""
    return hmac.new(_pseudonym_key, value.lower().encode(), hashlib.sha256).hexdigest()[:16]


def redact(text: str, limit: int = 300) -> str:
    """`text` without email addresses (server replies often quote them), cut to `limit`."""
    return _ADDRESS.sub("<address>", text)[:limit]


def describe_error(error: BaseException) -> str:
    """The real cause of `error` in one line, for a log: the driver's own error where a library
    wrapped one (SQLAlchemy's `orig`), with email addresses removed."""
    cause = getattr(error, "orig", None) or error
    text = str(cause).strip().splitlines()
    detail = redact(text[0]) if text else ""
    return f"{type(cause).__name__}: {detail}" if detail else type(cause).__name__


def _mask(text: str) -> str:
    return EMAIL_LIKE.sub("[email]", text)


def _masked(value):
    """`value` with every string in it masked (dicts, lists, tuples and sets are walked)."""
    if isinstance(value, str):
        return _mask(value)
    if isinstance(value, dict):
        return {_masked(key): _masked(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_masked(item) for item in value]
    return value


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = g.get("request_id") if has_request_context() else None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": _mask(record.getMessage()),
            "request_id": getattr(record, "request_id", None),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in entry:
                entry[key] = _masked(value)
        if record.exc_info:
            entry["error"] = record.exc_info[0].__name__ if record.exc_info[0] else None
        return json.dumps(entry, default=lambda value: _mask(str(value)))


def request_line(method: str, route: str, status: int, seconds: float) -> None:
    """The request's own log line (probes at DEBUG: they come every few seconds)."""
    level = logging.DEBUG if route in QUIET_ROUTES else logging.INFO
    if not _requests.isEnabledFor(level):
        return
    _requests.log(
        level,
        "%s %s %d",
        method,
        route,
        status,
        extra={
            "method": method,
            "route": route,
            "status": status,
            "duration_ms": round(seconds * 1000, 1),
        },
    )


def configure_logging(level: str, secret_key: str) -> None:
    """Send every log record to stderr as one JSON line with the request id."""
    global _pseudonym_key
    _pseudonym_key = hashlib.sha256(b"leadsvc.logs." + secret_key.encode()).digest()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        if isinstance(existing.formatter, JsonFormatter):
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # `leadsvc serve` runs werkzeug's server, whose access lines carry the raw path (link tokens,
    # query strings) and no request id; `request_line` stands in for them.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
