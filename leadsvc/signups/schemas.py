"""Request and reply schemas of the signup API; errors worded as the form words them."""

from __future__ import annotations

import re
from collections.abc import Mapping

from flask import current_app
from marshmallow import Schema, ValidationError, fields, post_load, validate, validates

from leadsvc.extensions import db
from leadsvc.geo.directory import INVALID_ZIP, ZIP_SHAPE, parse_zip, zip_directory
from leadsvc.input_bounds import WHITESPACE, any_case, text_bounds, text_shapes
from leadsvc.leads.email_address import EMAIL_SHAPE, EmailChecker, InvalidEmail

# The form's own words (the seed page's messages).
REQUIRED = "This is a required field."
INVALID_EMAIL = "Please enter a valid email address."
RECEIVED = "We've received your information, so keep an eye out for communications from MINI USA."
# Our words, in the form's style, where the form has none.
UNKNOWN_FIELD = "This field is not part of the form."
NOT_AN_OBJECT = "Please send the form as a JSON object."
UTM_NOT_AN_OBJECT = "Please give utm values as an object."
STALE_CONSENT_TEXT = "Please reload the page and try again."


_TLDS = "com net org info biz io ru cn xyz top club online site shop ly me co us".split()
#: Text that looks like a web address; names may not contain it. Also the names' OpenAPI `not`.
#: `\w` and `\b` read ASCII only, as OpenAPI (ECMA-262) patterns read them.
URL_LIKE_SHAPE = (
    rf"(://|{any_case('www')}\.|{any_case('http')}[sS]?:"
    rf"|\b[\w-]+\.(?:{'|'.join(any_case(tld) for tld in _TLDS)})\b)"
)
_URL_LIKE = re.compile(URL_LIKE_SHAPE, re.ASCII)
_FORBIDDEN_IN_NAMES = set("<>@")
#: Refused in form text: the characters of Unicode categories Cc (controls), Zl and Zp (line and
#: paragraph separators) and Cs (surrogates), and the bidi controls, as one pattern (a test checks
#: it against unicodedata over every code point; one search costs less than a lookup per character).
_CONTROLS = r"\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_CONTROL_PATTERN = re.compile(f"[{_CONTROLS}\\ud800-\\udfff]")
# The OpenAPI patterns of form text (ECMA-262; Python's `re` reads them alike). They leave out
# the lone surrogates: no Unicode regex engine takes them in a pattern, and no valid text has them.
#: No control character; and no control character, with something besides spaces.
ANY_TEXT_SHAPE, SOME_TEXT_SHAPE = text_shapes(_CONTROLS)
#: A name: as form text, without `<`, `>` or `@`.
NAME_SHAPE = f"^[^{_CONTROLS}<>@]*[^{_CONTROLS}<>@{WHITESPACE}][^{_CONTROLS}<>@]*$"
#: A page URL (http or https, no spaces) or a form id, or nothing.
SOURCE_SHAPE = f"^(?:{any_case('http')}[sS]?://[^{_CONTROLS} ]*|[A-Za-z0-9_.:/-]{{1,100}})?$"


def has_control_characters(value: str) -> bool:
    """True for C0/C1 controls (NUL, CR, LF, tab...), line/paragraph separators, bidi overrides."""
    return _CONTROL_PATTERN.search(value) is not None


class TrimmedText(fields.String):
    """A string with surrounding spaces trimmed, bounded, and free of control characters.

    A value of nothing but spaces, tabs or line breaks is blank. Otherwise control characters are
    refused anywhere in it, surrounding ones included (a trailing line break is not trimmed away).
    A missing value is "required"; a blank one is "required" too, unless `blank_is_invalid`
    (the form answers a blank email or ZIP with its "Please enter a valid ..." message) or
    `blank_is_absent` (an optional field left blank loads as None). The OpenAPI document shows
    the bounds: `maxLength`, and `pattern` (`shape`, else no control characters and, unless
    blank is absent, something besides spaces).
    """

    def __init__(
        self,
        *,
        max_length: int,
        invalid: str,
        blank_is_invalid: bool = False,
        blank_is_absent: bool = False,
        shape: str | None = None,
        **kwargs,
    ):
        self.max_length = max_length
        self.blank_is_invalid = blank_is_invalid
        self.blank_is_absent = blank_is_absent
        messages = {"required": REQUIRED, "null": REQUIRED, "invalid": invalid, "bad": invalid}
        messages.update(kwargs.pop("error_messages", {}))
        metadata = text_bounds(
            max_length,
            shape or (ANY_TEXT_SHAPE if blank_is_absent else SOME_TEXT_SHAPE),
            blank=blank_is_absent,
            metadata=kwargs.pop("metadata", None),
        )
        super().__init__(error_messages=messages, metadata=metadata, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        raw = super()._deserialize(value, attr, data, **kwargs)
        text = raw.strip()
        if not text:
            if self.blank_is_absent:
                return None
            raise self.make_error("bad" if self.blank_is_invalid else "required")
        if len(text) > self.max_length or has_control_characters(raw):
            raise self.make_error("bad")
        return text


class PersonName(TrimmedText):
    """A first or last name: 1-50 characters, no URLs, addresses or markup."""

    def __init__(self, label: str, **kwargs):
        metadata = {"not": {"pattern": URL_LIKE_SHAPE}, **kwargs.pop("metadata", {})}
        super().__init__(
            max_length=50,
            invalid=f"Please enter a valid {label}.",
            required=True,
            shape=NAME_SHAPE,
            metadata=metadata,
            **kwargs,
        )

    def _deserialize(self, value, attr, data, **kwargs):
        name = super()._deserialize(value, attr, data, **kwargs)
        if _URL_LIKE.search(name) or _FORBIDDEN_IN_NAMES.intersection(name):
            raise self.make_error("bad")
        return name


class EmailAddress(TrimmedText):
    """An address email-validator accepts; loads as a `CheckedEmail`."""

    def __init__(self, **kwargs):
        metadata = {**EMAIL_SHAPE, **kwargs.pop("metadata", {})}
        super().__init__(
            max_length=320,
            invalid=INVALID_EMAIL,
            blank_is_invalid=True,
            required=True,
            metadata=metadata,
            **kwargs,
        )

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
        super().__init__(
            max_length=16,
            invalid=INVALID_ZIP,
            blank_is_invalid=True,
            required=True,
            shape=ZIP_SHAPE,
            **kwargs,
        )

    def _deserialize(self, value, attr, data, **kwargs):
        zip_input = parse_zip(super()._deserialize(value, attr, data, **kwargs))
        if zip_input is None or zip_input.zip5 not in zip_directory():
            raise self.make_error("bad")
        return zip_input


class SourceField(TrimmedText):
    """The page URL (http/https) or a form id."""

    FORM_ID = re.compile(r"^[A-Za-z0-9_.:/-]{1,100}$")

    def __init__(self, **kwargs):
        super().__init__(
            max_length=2048,
            invalid="Please give a page URL or form id.",
            blank_is_absent=True,
            allow_none=True,
            shape=SOURCE_SHAPE,
            **kwargs,
        )

    def _deserialize(self, value, attr, data, **kwargs):
        source = super()._deserialize(value, attr, data, **kwargs)
        if source is None:
            return None
        if source.lower().startswith(("http://", "https://")) and " " not in source:
            return source
        if self.FORM_ID.match(source):
            return source
        raise self.make_error("bad")


class FormSchema(Schema):
    """Base for request schemas: unknown fields are refused, in words a person can read."""

    class Meta:
        ordered = True

    error_messages = {"unknown": UNKNOWN_FIELD, "type": NOT_AN_OBJECT}


def _short_text(max_length: int, label: str, **kwargs) -> TrimmedText:
    return TrimmedText(max_length=max_length, invalid=f"Please enter a valid {label}.", **kwargs)


def _utm_value(key: str) -> TrimmedText:
    # A blank UTM value means "no value": the key is dropped rather than refused.
    return _short_text(200, key, blank_is_absent=True, allow_none=True)


class UtmSchema(FormSchema):
    utm_source = _utm_value("utm_source")
    utm_medium = _utm_value("utm_medium")
    utm_campaign = _utm_value("utm_campaign")
    utm_term = _utm_value("utm_term")
    utm_content = _utm_value("utm_content")

    @post_load
    def _drop_blank_values(self, data: dict, **_kwargs) -> dict:
        return {key: value for key, value in data.items() if value is not None}


class UtmField(fields.Nested):
    """The `utm` object; anything but an object is refused with one message for the field."""

    def __init__(self, **kwargs):
        super().__init__(
            UtmSchema, error_messages={"type": UTM_NOT_AN_OBJECT}, allow_none=True, **kwargs
        )

    def _deserialize(self, value, attr, data, partial=None, **kwargs):
        if not isinstance(value, Mapping):
            raise self.make_error("type")
        return super()._deserialize(value, attr, data, partial=partial, **kwargs) or None


class SignupSchema(FormSchema):
    """What the form sends."""

    first_name = PersonName("first name", metadata={"example": "Jane"})
    last_name = PersonName("last name", metadata={"example": "Doe"})
    email = EmailAddress(metadata={"example": "jane.doe@example.com"})
    zip = ZipCodeField(
        metadata={
            "example": "10001",
            "description": "A real US ZIP code (a well-formed one that is not: 422, the form's "
            "own message)",
        }
    )
    source = SourceField(metadata={"description": "Page URL or form id"})
    utm = UtmField()
    interests = fields.List(
        _short_text(50, "interest", blank_is_invalid=True),
        validate=validate.Length(max=20, error="Please choose at most 20 interests."),
        allow_none=True,
        error_messages={"invalid": "Please give interests as a list."},
    )
    consent_text_version = fields.Integer(
        strict=True,
        allow_none=True,
        validate=validate.Range(min=1, max=1_000_000, error=STALE_CONSENT_TEXT),
        error_messages={"invalid": STALE_CONSENT_TEXT},
        metadata={
            "description": "The consent text version the form showed (default: active); one the "
            "service has not published: 422, asking to reload the page"
        },
    )
    # Anti-bot fields the page's own form sends (see leadsvc.signups.abuse); optional in the API.
    website = fields.String(
        allow_none=True,
        load_only=True,
        metadata={"description": "Honeypot: hidden on the page, left empty by people"},
    )
    form_token = fields.String(
        allow_none=True,
        load_only=True,
        metadata={"description": "The signed render time the page's form carries"},
    )

    @validates("consent_text_version")
    def _known_version(self, value: int | None, data_key: str) -> None:
        from leadsvc.consent.service import text_version_exists

        if value is not None and not text_version_exists(db.session, value):
            raise ValidationError(STALE_CONSENT_TEXT)


class SignupReplySchema(Schema):
    status = fields.String(metadata={"example": "received"})
    message = fields.String(metadata={"example": RECEIVED})
    suggestion = fields.String(
        metadata={"description": "A corrected address when the domain looks like a typo"}
    )
