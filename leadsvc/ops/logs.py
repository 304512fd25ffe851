"""JSON logs, one object per line, each carrying the request id.

Nothing personal is logged: code logs ids and outcomes, never names or addresses, and where a
log line must correlate a person it uses `pseudonym()` (a keyed hash). The formatter also masks
anything that looks like an email address in case a third-party library logs one.
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
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_pseudonym_key = b"leadsvc"


def pseudonym(value: str) -> str:
    """A stable keyed hash of a personal value, for correlating log lines without the value."""
    return hmac.new(_pseudonym_key, value.lower().encode(), hashlib.sha256).hexdigest()[:16]


def _mask(text: str) -> str:
    return EMAIL_LIKE.sub("[email]", text)


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
                entry[key] = _mask(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["error"] = record.exc_info[0].__name__ if record.exc_info[0] else None
        return json.dumps(entry, default=str)


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
