"""The compliance API (compliance keys): consent export, subject lookup, erasure."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Response, stream_with_context
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from leadsvc.auth import current_principal, keyed, requires
from leadsvc.consent.export import FORMATS, stream_export
from leadsvc.consent.service import parse_when
from leadsvc.consent.subjects import erase_subject, lookup_subject
from leadsvc.errors import ErrorSchema
from leadsvc.extensions import db
from leadsvc.input_bounds import PlainText
from leadsvc.request_context import consent_context

blp = Blueprint(
    "consent",
    __name__,
    url_prefix="/api/v1/consent",
    description="Consent log export, subject access and erasure (compliance keys)",
)
MEDIA = {"csv": "text/csv", "jsonl": "application/x-ndjson"}
FROM_AFTER_TO = "from must not be after to"
EXPORT_CONTENT = {media: {"schema": {"type": "string"}} for media in MEDIA.values()}


class When(fields.String):
    """A date (its midnight) or a date and time, ISO 8601; without an offset it is UTC (the
    same as the `leadsvc export consent` command takes)."""

    default_error_messages = {"invalid": "Not a valid ISO 8601 date or date and time."}

    def __init__(self, **kwargs):
        metadata = {"anyOf": [{"format": "date"}, {"format": "date-time"}]}
        super().__init__(metadata={**metadata, **kwargs.pop("metadata", {})}, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            return parse_when(text)
        except ValueError:
            raise self.make_error("invalid") from None


class ExportQuerySchema(Schema):
    start = When(
        data_key="from",
        load_default=None,
        metadata={"description": "Events at or after (a date or date and time; default: all)"},
    )
    end = When(
        data_key="to",
        load_default=None,
        metadata={
            "description": "Events before (a date or date and time; default: now); not before "
            "from (the same time as from: an empty range)"
        },
    )
    format = fields.String(load_default="csv", validate=validate.OneOf(FORMATS))

    @validates_schema
    def _ordered(self, data, **kwargs):
        if data.get("start") and data.get("end") and data["start"] > data["end"]:
            raise ValidationError(FROM_AFTER_TO, "from")


class SubjectQuerySchema(Schema):
    email = PlainText(required=True, max_length=320, blank=False)


class ErasureSchema(Schema):
    email = PlainText(required=True, max_length=320, blank=False)


class ErasureReplySchema(Schema):
    subject_hash = fields.String()
    already_erased = fields.Boolean()
    lead_id = fields.Integer(allow_none=True)
    events_rewritten = fields.Integer()
    dealers_notified = fields.List(fields.String())


def _jsonable(value):
    """Datetimes as ISO 8601 (Flask's default is the HTTP date format)."""
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    return value.isoformat() if isinstance(value, datetime) else value


def export_range(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    return (start or datetime(1970, 1, 1, tzinfo=UTC)), (end or datetime.now(UTC))


@blp.route("/events")
class ConsentEvents(MethodView):
    @requires("compliance")
    @blp.arguments(ExportQuerySchema, location="query")
    @blp.response(200, description="CSV (header row) or JSON lines, streamed")
    @blp.doc(
        responses={
            "200": {
                "content": {
                    "text/csv": {"schema": {"type": "string"}},
                    "application/x-ndjson": {"schema": {"type": "string"}},
                }
            }
        }
    )
    @blp.alt_response(422, schema=ErrorSchema, description="Bad query parameters, or from after to")
    @keyed(blp)
    def get(self, query):
        """Every consent event in the range, streamed (each export is audited)"""
        start, end = export_range(query["start"], query["end"])
        actor = f"api:{current_principal().prefix}"
        chunks = stream_export(db.engine(), query["format"], start, end, actor)
        filename = f"consent-events.{query['format']}"
        return Response(
            stream_with_context(chunks),
            mimetype=MEDIA[query["format"]],
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )


@blp.route("/subjects")
class Subjects(MethodView):
    @requires("compliance")
    @blp.arguments(SubjectQuerySchema, location="query")
    @blp.response(200, description="Everything held about the person (a data access request)")
    @blp.alt_response(422, schema=ErrorSchema, description="No email given, or a blank one")
    @keyed(blp)
    def get(self, query):
        """Everything held about one person: lead, consent history, emails, dealers notified"""
        return _jsonable(lookup_subject(db.session, query["email"]))


@blp.route("/erasures")
class Erasures(MethodView):
    @requires("compliance")
    @blp.arguments(ErasureSchema)
    @blp.response(200, ErasureReplySchema)
    @blp.alt_response(422, schema=ErrorSchema, description="No email given, or a blank one")
    @keyed(blp)
    def post(self, body):
        """Erase a person (idempotent): personal fields removed, consent kept under a keyed hash"""
        report = erase_subject(db.session, body["email"], consent_context(None))
        return report.__dict__
