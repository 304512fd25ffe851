"""Bounds on what a request may carry: body size, and text free of control characters.

Bodies over `MAX_CONTENT_LENGTH` get a clear 413 in the API's error shape. `PlainText` is the
string field for every free-text input outside the signup form (whose own fields word their
errors as the form does): NUL and the other C0 controls never reach a view or the database.
"""

from __future__ import annotations

import re

from flask import Flask
from marshmallow import fields
from werkzeug.exceptions import RequestEntityTooLarge

CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
CONTROL_MESSAGE = "Please remove control characters."
TOO_LARGE_MESSAGE = "The request is too large."


def without_controls(value: str | None, limit: int) -> str | None:
    """A header value fit to store: control characters dropped, cut to `limit` characters."""
    if value is None:
        return None
    return CONTROL_CHARACTERS.sub("", value)[:limit] or None


class PlainText(fields.String):
    """A string with no control characters (NUL, CR, LF, tab, ...), at most `max_length` long."""

    def __init__(self, *, max_length: int = 200, **kwargs):
        self.max_length = max_length
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if CONTROL_CHARACTERS.search(text):
            raise self.make_error("controls")
        if len(text) > self.max_length:
            raise self.make_error("long")
        return text

    default_error_messages = {
        **fields.String.default_error_messages,
        "controls": CONTROL_MESSAGE,
        "long": "Please use at most {max_length} characters.",
    }

    def make_error(self, key: str, **kwargs):
        if key == "long":
            kwargs.setdefault("max_length", self.max_length)
        return super().make_error(key, **kwargs)


def _too_large(_error: RequestEntityTooLarge):
    from leadsvc.errors import error_reply

    return error_reply(413, TOO_LARGE_MESSAGE)


def init_app(app: Flask) -> None:
    app.register_error_handler(RequestEntityTooLarge, _too_large)
