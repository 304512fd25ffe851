"""Schemas of the follow-up API: the answer call, the figures, the holidays."""

from marshmallow import Schema, fields

from leadsvc.dealers.dealer_rows import CODE_SHAPE
from leadsvc.input_bounds import PlainText, UtcDateTime


class AnswerReplySchema(Schema):
    id = fields.Integer()
    answered_at = fields.DateTime(allow_none=True)
    answered_by = fields.String(
        allow_none=True, metadata={"description": "crm (this call) or ack (an acknowledgement)"}
    )
    within_target = fields.Boolean(
        allow_none=True,
        metadata={"description": "Answered within the response target; null if no clock ran"},
    )


class FiguresSchema(Schema):
    received = fields.Integer(metadata={"description": "Leads received (each turn counts)"})
    answered = fields.Integer()
    answered_within_target = fields.Integer()
    median_answer_hours = fields.Float(
        allow_none=True, metadata={"description": "Median time to answer, in business hours"}
    )
    p90_answer_hours = fields.Float(
        allow_none=True, metadata={"description": "90th percentile, in business hours"}
    )
    reminded = fields.Integer()
    moved_away = fields.Integer(metadata={"description": "Moved on at the response target"})
    received_by_reassignment = fields.Integer()


class DealerFiguresSchema(FiguresSchema):
    code = fields.String()
    name = fields.String()
    response_hours = fields.Float(metadata={"description": "The dealer's response target"})


class FiguresListSchema(Schema):
    dealers = fields.List(fields.Nested(DealerFiguresSchema))


class FiguresQuerySchema(Schema):
    since = UtcDateTime(metadata={"description": "Only turns started at or after this"})


class HolidaySchema(Schema):
    day = fields.Date(required=True)
    name = PlainText(required=True, max_length=100)
    dealer_code = PlainText(
        load_default=None,
        allow_none=True,
        max_length=16,
        metadata={
            "description": "An existing dealer's code: closed that day; null or empty: all",
            "pattern": f"^(?:{CODE_SHAPE[1:-1]})?$",
        },
    )


class HolidayListSchema(Schema):
    holidays = fields.List(fields.Nested(HolidaySchema))
