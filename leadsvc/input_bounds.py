"""Bounds on what a request may carry: body size, encoding, and text free of control characters.

Bodies over `MAX_CONTENT_LENGTH` get a clear 413 in the API's error shape, whether they declare
their length or stream it (chunked). JSON and form bodies must be UTF-8 (Werkzeug would otherwise
keep undecodable form bytes as literal `%FF` text or U+FFFD, and store them), and JSON may not
nest deeper than the parser can follow: both get a clear 400 before any limiter, schema or view
reads the body. `PlainText` is the string field for
every free-text input outside the signup form (whose own fields word their errors as the form
does): NUL and the other C0 controls never reach a view or the database.
"""

from __future__ import annotations

import json
import re
from urllib.parse import unquote_to_bytes

from flask import Flask, current_app, request
from marshmallow import ValidationError, fields
from werkzeug.exceptions import RequestEntityTooLarge

from leadsvc.db import as_utc

CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
CONTROL_MESSAGE = "Please remove control characters."
TOO_LARGE_MESSAGE = "The request is too large."
NOT_UTF8_MESSAGE = "Please send the form as UTF-8 text."
#: The same words webargs' "Invalid JSON body." is given (leadsvc.errors.BODY_MESSAGES).
INVALID_JSON_MESSAGE = "Please send the form as valid JSON."
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def without_controls(value: str | None, limit: int) -> str | None:
    """A header value fit to store: control characters dropped, cut to `limit` characters."""
    if value is None:
        return None
    return CONTROL_CHARACTERS.sub("", value)[:limit] or None


#: Whitespace as Python's `str.strip()` and `\s` take it, spelled out for OpenAPI patterns
#: (ECMA-262 and Python `re` read them alike): a validator or generator may read `\s` as ASCII
#: only, or as another Unicode set.
WHITESPACE = r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


def text_shapes(controls: str) -> tuple[str, str]:
    """The OpenAPI patterns of text without the characters of the class `controls`: (any such
    text, such text with something besides whitespace)."""
    return f"^[^{controls}]*$", f"^[^{controls}]*[^{controls}{WHITESPACE}][^{controls}]*$"


def text_bounds(max_length: int, pattern: str, *, blank: bool, metadata: dict | None) -> dict:
    """A text field's OpenAPI metadata: `maxLength`, `pattern`, `minLength` 1 unless a blank
    value is allowed, then the field's own `metadata` (which wins)."""
    bounds = {"maxLength": max_length, "pattern": pattern} | ({} if blank else {"minLength": 1})
    return bounds | (metadata or {})


#: The OpenAPI patterns of `PlainText`: no control character anywhere, and for a field that may
#: not be blank, at least one other than a space.
NO_CONTROLS_PATTERN, SOME_TEXT_PATTERN = text_shapes(r"\x00-\x1f\x7f")
BLANK_MESSAGE = "Please fill this in."


def any_case(word: str) -> str:
    """`word` as a pattern matching it in any case, without a flag (OpenAPI patterns have none)."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in word)


class PlainText(fields.String):
    """A string with no control characters (NUL, CR, LF, tab, ...), at most `max_length` long.

    `blank=False` refuses a value of nothing but spaces; `pattern` (with `pattern_error`) is a
    shape the value must have besides, and must itself leave out control characters. The
    OpenAPI document shows the same bounds (maxLength, minLength, pattern)."""

    def __init__(
        self,
        *,
        max_length: int = 200,
        blank: bool = True,
        pattern: str | None = None,
        pattern_error: str | None = None,
        **kwargs,
    ):
        self.max_length = max_length
        self.blank = blank
        self.pattern = re.compile(pattern) if pattern else None
        self.pattern_error = pattern_error
        shape = pattern or (NO_CONTROLS_PATTERN if blank else SOME_TEXT_PATTERN)
        metadata = text_bounds(
            max_length, shape, blank=blank, metadata=kwargs.pop("metadata", None)
        )
        super().__init__(metadata=metadata, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if CONTROL_CHARACTERS.search(text):
            raise self.make_error("controls")
        if not self.blank and not text.strip():
            raise self.make_error("blank")
        if len(text) > self.max_length:
            raise self.make_error("long")
        if self.pattern is not None and self.pattern.search(text) is None:
            raise ValidationError(self.pattern_error or self.error_messages["invalid"])
        return text

    default_error_messages = {
        **fields.String.default_error_messages,
        "controls": CONTROL_MESSAGE,
        "blank": BLANK_MESSAGE,
        "long": "Please use at most {max_length} characters.",
    }

    def make_error(self, key: str, **kwargs):
        if key == "long":
            kwargs.setdefault("max_length", self.max_length)
        return super().make_error(key, **kwargs)


class UtcDateTime(fields.AwareDateTime):
    """An ISO 8601 date and time with its offset (any RFC 3339 allows), loaded as the same
    instant in UTC: the database need not take the offset, nor the calendar pass its ends."""

    def __init__(self, **kwargs):
        super().__init__(default_timezone=None, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        return as_utc(super()._deserialize(value, attr, data, **kwargs))


def _too_large(_error: RequestEntityTooLarge):
    from leadsvc.errors import error_reply

    return error_reply(413, TOO_LARGE_MESSAGE)


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


#: JSON nested deeper than Python's recursion limit makes the parser raise RecursionError; a body
#: with fewer opening brackets than this cannot get anywhere near it, and is not parsed here.
_NESTING_WORTH_CHECKING = 200


def _body_problem() -> str | None:
    """Why the body cannot be read as UTF-8 JSON or form data, or None (reads at most the cap)."""
    if request.is_json:
        data = request.get_data(cache=True)
        if not data:
            return None
        if not _utf8(data):
            return NOT_UTF8_MESSAGE
        if data.count(b"[") + data.count(b"{") < _NESTING_WORTH_CHECKING:
            return None  # too few brackets to nest deep enough to matter: no second parse
        try:
            json.loads(data)
        except RecursionError:
            return INVALID_JSON_MESSAGE
        except ValueError:
            return None  # webargs and the views answer unparseable JSON in their own words
        return None
    if request.mimetype == _FORM_TYPES[0]:
        data = request.get_data(cache=True)
        pairs = data.replace(b"+", b" ").replace(b";", b"&").split(b"&")
        if not _utf8(data) or not all(_utf8(unquote_to_bytes(pair)) for pair in pairs):
            return NOT_UTF8_MESSAGE
    elif request.mimetype == _FORM_TYPES[1]:
        # Werkzeug decodes multipart fields with errors="replace": undecodable bytes become U+FFFD.
        if any("\ufffd" in value for _, value in request.form.items(multi=True)):
            return NOT_UTF8_MESSAGE
    return None


def _refuse_a_cut_off_stream() -> None:
    """A body sent without Content-Length (chunked) over the cap: Werkzeug reads it up to the cap
    and stops without a word, so a form cut short could pass as a complete one. Refuse it."""
    if request.content_length is not None:
        return
    limit = request.max_content_length
    if limit is None:
        return
    if "wsgi.input_terminated" not in request.environ:
        return  # Werkzeug gives such a request an empty body
    if len(request.get_data(cache=True)) >= limit and request.environ["wsgi.input"].read(1):
        raise RequestEntityTooLarge()


def body_limit(max_bytes: int):
    """Let one view take bodies up to `max_bytes` (an upload page), instead of the app-wide
    MAX_CONTENT_LENGTH, through Flask's per-request `Request.max_content_length`. It is set
    here, before anything reads the body; the other views keep the app's limit."""

    def decorate(view):
        view.max_content_length = max_bytes
        return view

    return decorate


def _apply_view_limit() -> None:
    view = current_app.view_functions.get(request.endpoint or "")
    limit = getattr(view, "max_content_length", None)
    if limit is not None:
        request.max_content_length = limit


def _check_body():
    _apply_view_limit()
    method = request.method
    if method in ("POST", "PUT", "PATCH", "DELETE"):
        _refuse_a_cut_off_stream()
    if method in ("POST", "PUT", "PATCH") and request.mimetype:
        problem = _body_problem()
        if problem is not None:
            from leadsvc.errors import error_reply

            return error_reply(400, problem)
    return None


def init_app(app: Flask) -> None:
    app.register_error_handler(RequestEntityTooLarge, _too_large)
    app.before_request(_check_body)
