"""Request and reply schemas of the signup API; errors worded as the form words them."""

from __future__ import annotations

import re
import unicodedata

from flask import current_app
from marshmallow import Schema, ValidationError, fields, validate, validates

from leadsvc.extensions import db
from leadsvc.geo.directory import parse_zip, zip_directory
from leadsvc.signups.email_address import EmailChecker, InvalidEmail

# The form's own words (the seed page's messages).
REQUIRED = "This is a required field."
INVALID_EMAIL = "Please enter a valid email address."
INVALID_ZIP = "Please enter a valid Zip code."
RECEIVED = "We've received your information, so keep an eye out for communications from MINI USA."
# Our words, in the form's style, where the form has none.
UNKNOWN_FIELD = "This field is not part of the form."
STALE_CONSENT_TEXT = "Please reload the page and try again."

_URL_LIKE = re.compile(
    r"(://|www\.|https?:|\b[\w-]+\.(?:com|net|org|info|biz|io|ru|cn|xyz|top|club|online|site"
    r"|shop|ly|me|co|us)\b)",
    re.IGNORECASE,
)
_FORBIDDEN_IN_NAMES = set("<>@")
_BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def has_control_characters(value: str) -> bool:
    """True for C0/C1 controls (NUL, CR, LF, tab...), line/paragraph separators, bidi overrides."""
    return any(
        unicodedata.category(ch) in {"Cc", "Zl", "Zp", "Cs"} or ch in _BIDI_CONTROLS
        for ch in value
    )


class TrimmedText(fields.String):
    """A string with surrounding spaces trimmed, bounded, and free of control characters."""

    def __init__(self, *, max_length: int, invalid: str, **kwargs):
        self.max_length = max_length
        messages = {"required": REQUIRED, "null": REQUIRED, "invalid": invalid, "bad": invalid}
        messages.update(kwargs.pop("error_messages", {}))
        super().__init__(error_messages=messages, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        if not text:
            raise self.make_error("required")
        if len(text) > self.max_length or has_control_characters(text):
            raise self.make_error("bad")
        return text


class PersonName(TrimmedText):
    """A first or last name: 1-50 characters, no URLs, addresses or markup."""

    def __init__(self, label: str, **kwargs):
        super().__init__(
            max_length=50, invalid=f"Please enter a valid {label}.", required=True, **kwargs
        )

    def _deserialize(self, value, attr, data, **kwargs):
        name = super()._deserialize(value, attr, data, **kwargs)
        if _URL_LIKE.search(name) or _FORBIDDEN_IN_NAMES.intersection(name):
            raise self.make_error("bad")
        return name


class EmailAddress(TrimmedText):
    """An address email-validator accepts; loads as a `CheckedEmail`."""

    def __init__(self, **kwargs):
        super().__init__(max_length=320, invalid=INVALID_EMAIL, required=True, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        typed = super()._deserialize(value, attr, data, **kwargs)
        checker: EmailChecker = current_app.extensions["leadsvc.email_checker"]
        try:
            return checker.check(typed)
        except InvalidEmail:
            raise self.make_error("bad") from None


class ZipCodeField(TrimmedText):
    """A real US ZIP code (`12345`, `12345-6789`, `12345 6789`); loads as a `ZipInput`."""

    def __init__(self, **kwargs):
        super().__init__(max_length=10, invalid=INVALID_ZIP, required=True, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        zip_input = parse_zip(super()._deserialize(value, attr, data, **kwargs))
        if zip_input is None or zip_input.zip5 not in zip_directory():
            raise self.make_error("bad")
        return zip_input


class SourceField(TrimmedText):
    """The page URL (http/https) or a form id."""

    FORM_ID = re.compile(r"^[A-Za-z0-9_.:/-]{1,100}$")

    def __init__(self, **kwargs):
        super().__init__(max_length=2048, invalid="Please give a page URL or form id.", **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        source = super()._deserialize(value, attr, data, **kwargs)
        if source.lower().startswith(("http://", "https://")) and " " not in source:
            return source
        if self.FORM_ID.match(source):
            return source
        raise self.make_error("bad")


class FormSchema(Schema):
    """Base for request schemas: unknown fields are refused, in words a person can read."""

    class Meta:
        ordered = True

    _default_error_messages = {**Schema._default_error_messages, "unknown": UNKNOWN_FIELD}


def _short_text(max_length: int, label: str) -> TrimmedText:
    return TrimmedText(max_length=max_length, invalid=f"Please enter a valid {label}.")


class UtmSchema(FormSchema):
    utm_source = _short_text(200, "utm_source")
    utm_medium = _short_text(200, "utm_medium")
    utm_campaign = _short_text(200, "utm_campaign")
    utm_term = _short_text(200, "utm_term")
    utm_content = _short_text(200, "utm_content")


class SignupSchema(FormSchema):
    """What the form sends."""

    first_name = PersonName("first name", metadata={"example": "Jane"})
    last_name = PersonName("last name", metadata={"example": "Doe"})
    email = EmailAddress(metadata={"example": "jane.doe@example.com"})
    zip = ZipCodeField(metadata={"example": "10001"})
    source = SourceField(metadata={"description": "Page URL or form id"})
    utm = fields.Nested(UtmSchema, error_messages={"type": "Please give utm values as an object."})
    interests = fields.List(
        _short_text(50, "interest"),
        validate=validate.Length(max=20, error="Please choose at most 20 interests."),
        error_messages={"invalid": "Please give interests as a list."},
    )
    consent_text_version = fields.Integer(
        strict=True,
        validate=validate.Range(min=1, max=1_000_000, error=STALE_CONSENT_TEXT),
        error_messages={"invalid": STALE_CONSENT_TEXT},
        metadata={"description": "The consent text version the form showed (default: active)"},
    )

    @validates("consent_text_version")
    def _known_version(self, value: int, data_key: str) -> None:
        from leadsvc.consent.service import text_version_exists

        if not text_version_exists(db.session, value):
            raise ValidationError(STALE_CONSENT_TEXT)


class SignupReplySchema(Schema):
    status = fields.String(metadata={"example": "received"})
    message = fields.String(metadata={"example": RECEIVED})
    suggestion = fields.String(
        metadata={"description": "A corrected address when the domain looks like a typo"}
    )
