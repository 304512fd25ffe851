"""Schemas of the dealer and admin APIs.

The dealer fields are checked by `leadsvc.dealers.dealer_rows` (one set of checks for the CSV
import, this API and the console; its reasons come back per row); the OpenAPI document shows the
same shapes, taken from there, so a request the document allows fails only on what a schema
cannot say: a ZIP that is well-formed but not real, a code no dealer has, or fields that must go
together.
"""

from marshmallow import Schema, fields, validate

from leadsvc.dealers.dealer_rows import (
    CODE_SHAPE,
    OPENING_HOURS_SHAPE,
    PHONE_SHAPE,
    TIME_ZONES,
    WEBHOOK_URL_SHAPE,
)
from leadsvc.dealers.leads import MAX_PAGE
from leadsvc.geo.directory import ZIP_SHAPE
from leadsvc.geo.source import STATE_NAMES
from leadsvc.input_bounds import PlainText, UtcDateTime
from leadsvc.leads.email_address import EMAIL_SHAPE
from leadsvc.pagination import CURSOR_SHAPE

FORMATS = ("json", "csv", "adf")
#: Ids are 64-bit in both databases.
MAX_ID = 2**63 - 1


class FeedQuerySchema(Schema):
    cursor = PlainText(
        max_length=500,
        pattern=CURSOR_SHAPE,
        pattern_error="This cursor is not valid.",
        metadata={
            "description": "next_cursor of the previous page; a cursor issued for another dealer,"
            " other filters or another format is answered 400"
        },
    )
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=MAX_PAGE))
    since = UtcDateTime(metadata={"description": "Only leads created at or after this time"})
    status = fields.String(
        load_default="new",
        validate=validate.OneOf(["new", "all"]),
        metadata={"description": "new: not yet acknowledged (default); all"},
    )
    format = fields.String(
        validate=validate.OneOf(FORMATS),
        metadata={"description": "json (default), csv or adf; or choose by the Accept header"},
    )


class DealerLeadSchema(Schema):
    id = fields.Integer()
    first_name = fields.String(allow_none=True)
    last_name = fields.String(allow_none=True)
    email = fields.String(allow_none=True)
    zip = fields.String(allow_none=True)
    zip4 = fields.String(allow_none=True)
    distance_km = fields.Float(allow_none=True)
    distance_miles = fields.Float(allow_none=True)
    routing_reason = fields.String(metadata={"description": "territory, nearest or manual"})
    consent = fields.String(
        metadata={
            "description": "given, confirmed, withdrawn or erased; withdrawn and erased leads "
            "carry no personal fields (names, email, ZIP, interests, source are null)"
        }
    )
    email_status = fields.String(
        metadata={"description": "ok, or bounced: mail to the address bounced (do not email it)"}
    )
    dealer_contact = fields.Boolean(
        metadata={
            "description": "false: the person asked not to be contacted by the dealer; the lead "
            "then carries no personal fields, as a withdrawn one"
        }
    )
    created_at = fields.DateTime()
    acknowledged_at = fields.DateTime(allow_none=True)
    interests = fields.List(fields.String(), allow_none=True)
    source = fields.String(allow_none=True)


class FeedSchema(Schema):
    leads = fields.List(fields.Nested(DealerLeadSchema))
    next_cursor = fields.String(allow_none=True)
    follow_up = fields.Dict(
        metadata={
            "description": "The dealer's follow-up figures: received, answered, "
            "answered_within_target, median_answer_hours and p90_answer_hours (business hours), "
            "reminded, moved_away, received_by_reassignment"
        }
    )


class AckSchema(Schema):
    lead_ids = fields.List(
        fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_ID)),
        required=True,
        validate=validate.Length(min=1, max=MAX_PAGE),
    )


class AckReplySchema(Schema):
    acknowledged = fields.List(fields.Integer())
    not_found = fields.List(fields.Integer())


class PageQuerySchema(Schema):
    cursor = PlainText(
        max_length=500,
        pattern=CURSOR_SHAPE,
        pattern_error="This cursor is not valid.",
        metadata={"description": "next_cursor of the previous page (else 400)"},
    )
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=MAX_PAGE))


class LeadPageSchema(Schema):
    leads = fields.List(fields.Nested(DealerLeadSchema))
    next_cursor = fields.String(allow_none=True)


class DealerSchema(Schema):
    code = fields.String()
    name = fields.String()
    street = fields.String()
    city = fields.String()
    state = fields.String()
    zip = fields.String(attribute="zip5")
    phone = fields.String()
    lead_email = fields.String()
    webhook_url = fields.String(allow_none=True)
    has_webhook_secret = fields.Method("_has_secret")
    latitude = fields.Float()
    longitude = fields.Float()
    coordinates_from = fields.String()
    active = fields.Boolean()
    response_hours = fields.Float(allow_none=True, metadata={"description": "null: the default"})
    opening_hours = fields.String(allow_none=True, metadata={"description": "null: the default"})
    time_zone = fields.String(allow_none=True, metadata={"description": "null: from the state"})

    def _has_secret(self, dealer) -> bool:
        return bool(dealer.webhook_secret)


class DealerListSchema(Schema):
    dealers = fields.List(fields.Nested(DealerSchema))


def _shaped(pattern: str, description: str | None = None, **kwargs) -> dict:
    """Field metadata: the shape `dealer_rows` checks, shown in the OpenAPI document."""
    return {"pattern": pattern, **({"description": description} if description else {}), **kwargs}


class DealerUpsertSchema(Schema):
    """A dealer as the import file has it (all values as text; the import validates them)."""

    name = PlainText(required=True, max_length=120, metadata={"minLength": 1})
    street = PlainText(required=True, metadata={"minLength": 1})
    city = PlainText(required=True, max_length=100, metadata={"minLength": 1})
    state = PlainText(required=True, max_length=2, metadata={"enum": sorted(STATE_NAMES)})
    zip = PlainText(required=True, max_length=10, metadata=_shaped(ZIP_SHAPE, "A real US ZIP code"))
    phone = PlainText(
        required=True,
        max_length=32,
        metadata=_shaped(PHONE_SHAPE, "At least 10 digits", maxLength=31),
    )
    lead_email = PlainText(required=True, max_length=254, metadata=EMAIL_SHAPE)
    webhook_url = PlainText(
        load_default="",
        max_length=2048,
        metadata=_shaped(
            WEBHOOK_URL_SHAPE,
            "http(s) URL of a public address (or of WEBHOOK_ALLOWED_NETWORKS); needs "
            "webhook_secret",
        ),
    )
    webhook_secret = PlainText(
        load_default="",
        load_only=True,
        metadata={"description": "At least 16 characters; given with webhook_url only"},
    )
    latitude = fields.Float(
        load_default=None,
        allow_none=True,
        metadata={"minimum": -90, "maximum": 90, "description": "Given with longitude"},
    )
    longitude = fields.Float(
        load_default=None,
        allow_none=True,
        metadata={"minimum": -180, "maximum": 180, "description": "Given with latitude"},
    )
    response_hours = fields.Float(
        load_default=None,
        allow_none=True,
        metadata={"description": "Hours to answer a lead", "minimum": 0.01, "maximum": 8760},
    )
    opening_hours = PlainText(
        load_default="",
        max_length=200,
        metadata=_shaped(
            OPENING_HOURS_SHAPE,
            "e.g. mon-fri 09:00-18:00; sat 09:00-17:00 (each range closes after it opens)",
        ),
    )
    time_zone = PlainText(
        load_default="",
        max_length=64,
        metadata={
            "description": "IANA zone, e.g. America/Chicago; empty: from the state",
            "enum": ["", *TIME_ZONES],
        },
    )


class RowOutcomeSchema(Schema):
    line = fields.Integer()
    key = fields.String()
    action = fields.String()
    reason = fields.String(allow_none=True)


class ImportReplySchema(Schema):
    applied = fields.Boolean()
    rows = fields.List(fields.Nested(RowOutcomeSchema))
    routing_version = fields.Integer(allow_none=True)


class TerritorySchema(Schema):
    zip = PlainText(
        required=True, max_length=10, metadata=_shaped(ZIP_SHAPE, "A real US ZIP code, once")
    )
    dealer_code = PlainText(
        required=True, max_length=16, metadata=_shaped(CODE_SHAPE, "An existing dealer's code")
    )
    reassign_overdue = fields.Boolean(
        load_default=False,
        metadata={"description": "Move this ZIP's leads on when the dealer misses its target"},
    )


class TerritoriesSchema(Schema):
    assignments = fields.List(
        fields.Nested(TerritorySchema), required=True, validate=validate.Length(min=1, max=50_000)
    )


class ReassignSchema(Schema):
    dealer_code = PlainText(
        max_length=16,
        required=True,
        allow_none=True,
        metadata=_shaped(CODE_SHAPE, "An active dealer's code; null: back to the unassigned pool"),
    )
