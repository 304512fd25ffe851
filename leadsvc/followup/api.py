"""The follow-up API: a dealer's CRM marks a lead answered; admins read the figures and keep
the holidays on which no dealer's clock runs."""

from __future__ import annotations

import sqlalchemy as sa
from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint, abort

from leadsvc.auth import current_principal, keyed, requires
from leadsvc.dealers.models import Dealer
from leadsvc.errors import ErrorSchema
from leadsvc.extensions import db
from leadsvc.followup.answers import record_answer
from leadsvc.followup.calendars import target_hours
from leadsvc.followup.clock import clock_of
from leadsvc.followup.figures import dealer_figures
from leadsvc.followup.models import Holiday
from leadsvc.followup.schemas import (
    AnswerReplySchema,
    FiguresListSchema,
    FiguresQuerySchema,
    HolidayListSchema,
    HolidaySchema,
)

dealer_blp = Blueprint(
    "dealer_follow_up",
    __name__,
    url_prefix="/api/v1/dealer",
    description="Answering leads within the response target (dealer keys)",
)
admin_blp = Blueprint(
    "admin_follow_up",
    __name__,
    url_prefix="/api/v1/admin",
    description="Follow-up figures per dealer and holidays (admin)",
)


@dealer_blp.route("/leads/<int(max=9223372036854775807):lead_id>/answer")
class DealerLeadAnswer(MethodView):
    @requires("dealer")
    @dealer_blp.response(200, AnswerReplySchema)
    @dealer_blp.alt_response(404, schema=ErrorSchema, description="Not one of this dealer's leads")
    @keyed(dealer_blp)
    def post(self, lead_id: int):
        """Mark a lead answered (the CRM contacted the person); idempotent

        An answered lead is neither reminded nor moved to another dealer. Acknowledging a lead
        counts as an answer too.
        """
        app = current_app._get_current_object()
        try:
            answer = record_answer(
                db.session,
                app.config["LEADSVC_SETTINGS"],
                current_principal().dealer_id,
                lead_id,
                clock_of(app).now(),
            )
        except LookupError:
            abort(404, message="No such lead.")
        return {
            "id": answer.lead_id,
            "answered_at": answer.answered_at,
            "answered_by": answer.answered_by,
            "within_target": answer.within_target,
        }


@admin_blp.route("/follow-up")
class AdminFollowUpFigures(MethodView):
    @requires("admin")
    @admin_blp.arguments(FiguresQuerySchema, location="query")
    @admin_blp.response(200, FiguresListSchema)
    @keyed(admin_blp)
    def get(self, query):
        """Follow-up figures of every dealer (times to answer in business hours)"""
        dealers = list(db.session.scalars(sa.select(Dealer).order_by(Dealer.code)))
        figures = dealer_figures(db.session, [d.id for d in dealers], query.get("since"))
        settings = current_app.config["LEADSVC_SETTINGS"]
        return {
            "dealers": [
                {
                    "code": d.code,
                    "name": d.name,
                    "response_hours": target_hours(settings, d),
                    **figures[d.id],
                }
                for d in dealers
            ]
        }


@admin_blp.route("/holidays")
class AdminHolidays(MethodView):
    @requires("admin")
    @admin_blp.response(200, HolidayListSchema)
    @keyed(admin_blp)
    def get(self):
        """Closed days added on top of US federal holidays"""
        rows = db.session.execute(
            sa.select(Holiday.day, Holiday.name, Dealer.code)
            .outerjoin(Dealer, Dealer.id == Holiday.dealer_id)
            .order_by(Holiday.day, Holiday.id)
        )
        return {"holidays": [{"day": d, "name": n, "dealer_code": c} for d, n, c in rows]}

    @requires("admin")
    @admin_blp.arguments(HolidaySchema)
    @admin_blp.response(200, HolidaySchema)
    @admin_blp.alt_response(422, schema=ErrorSchema, description="No such dealer")
    @keyed(admin_blp)
    def post(self, body):
        """Add a closed day, for one dealer or for all; clocks skip it from the next pass"""
        dealer_id = None
        if body["dealer_code"]:
            code = body["dealer_code"].upper()
            dealer_id = db.session.scalar(sa.select(Dealer.id).where(Dealer.code == code))
            if dealer_id is None:
                message = f"No dealer with code {code}."
                abort(422, message=message, errors={"dealer_code": message})
        db.session.add(Holiday(day=body["day"], name=body["name"], dealer_id=dealer_id))
        db.session.commit()
        return body
