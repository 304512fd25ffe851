"""The dealer lead API (role dealer) and the admin API for dealers, territories and leads.

Views parse, call `leadsvc.dealers.leads` / `directory`, and shape the reply. Every dealer query
is filtered by the calling key's dealer; cursors are signed and bound to the caller and filters.
"""

from __future__ import annotations

from datetime import UTC

import sqlalchemy as sa
from flask import Response, current_app, request, url_for
from flask.views import MethodView
from flask_smorest import Blueprint, abort

from leadsvc.auth import current_principal, keyed, requires
from leadsvc.dealers import directory, leads
from leadsvc.dealers.adf import adf_document
from leadsvc.dealers.dealer_rows import CODE_SHAPE
from leadsvc.dealers.formats import leads_csv
from leadsvc.dealers.models import Dealer
from leadsvc.dealers.schemas import (
    AckReplySchema,
    AckSchema,
    DealerLeadSchema,
    DealerListSchema,
    DealerSchema,
    DealerUpsertSchema,
    FeedQuerySchema,
    FeedSchema,
    ImportReplySchema,
    LeadPageSchema,
    PageQuerySchema,
    ReassignSchema,
    TerritoriesSchema,
)
from leadsvc.errors import ErrorSchema
from leadsvc.extensions import db
from leadsvc.pagination import CursorError, CursorPager

dealer_blp = Blueprint(
    "dealer_leads",
    __name__,
    url_prefix="/api/v1/dealer",
    description="A dealer's own leads (dealer keys)",
)
admin_blp = Blueprint(
    "admin",
    __name__,
    url_prefix="/api/v1/admin",
    description="Dealers, territories, unassigned leads (admin)",
)

NOT_FOUND = "No such lead."
MEDIA_TYPES = {"csv": "text/csv", "adf": "application/xml", "json": "application/json"}
_NEXT = {
    "X-Next-Cursor": {"schema": {"type": "string"}, "description": "The next page's cursor"},
    "Link": {"schema": {"type": "string"}, "description": 'The next page, rel="next"'},
}
#: The `{code}` path parameter, with the shape of a dealer code.
CODE_PARAMETER = {
    "in": "path",
    "name": "code",
    "required": True,
    "schema": {"type": "string", "pattern": CODE_SHAPE},
}
FEED_FORMATS_DOC = {
    "200": {
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Feed"}},
            "text/csv": {"schema": {"type": "string"}},
            "application/xml": {"schema": {"type": "string", "description": "ADF 1.0"}},
        },
        "headers": _NEXT,
    },
    "204": {"description": "An ADF page with no lead that can be sent", "headers": _NEXT},
}


def _pager(name: str) -> CursorPager:
    return CursorPager(current_app.config["SECRET_KEY"], name)


def _decode_cursor(pager: CursorPager, cursor: str | None, scope: dict):
    if not cursor:
        return None
    try:
        return pager.decode(cursor, scope)
    except CursorError as error:
        abort(400, message=str(error))


def _chosen_format(asked: str | None) -> str:
    if asked:
        return asked
    best = request.accept_mimetypes.best_match(
        ["application/json", "text/csv", "application/xml", "text/xml"], default="application/json"
    )
    return {"text/csv": "csv", "application/xml": "adf", "text/xml": "adf"}.get(best, "json")


@dealer_blp.route("/leads")
class DealerLeads(MethodView):
    @requires("dealer")
    @dealer_blp.arguments(FeedQuerySchema, location="query")
    @dealer_blp.response(200, FeedSchema, description="JSON; or CSV / ADF XML by format or Accept")
    @dealer_blp.alt_response(400, schema=ErrorSchema, description="A cursor not issued for this")
    @dealer_blp.alt_response(422, schema=ErrorSchema, description="Bad query parameters")
    @dealer_blp.doc(responses=FEED_FORMATS_DOC)
    @keyed(dealer_blp)
    def get(self, query):
        """The calling dealer's leads, oldest first, one page at a time

        `next_cursor` (CSV and ADF: `X-Next-Cursor`) continues after the last lead served, at the
        end of the feed too: keep it and poll on from it, and no lead is skipped or served twice.
        A page shorter than `limit` means there is nothing more for now; `Link: rel="next"` is
        sent only while more leads are ready. A cursor works only with the filters (`status`,
        `since`) and format it was issued for, and only for the dealer it was issued to.
        """
        principal = current_principal()
        chosen = _chosen_format(query.get("format"))
        since = query.get("since")
        scope = {
            "d": principal.dealer_id,
            "st": query["status"],
            "f": chosen,
            "si": since.astimezone(UTC).isoformat() if since else None,
        }
        pager = _pager("dealer-feed")
        page = leads.dealer_feed(
            db.session,
            principal.dealer_id,
            after=_decode_cursor(pager, query.get("cursor"), scope),
            limit=query["limit"],
            since=since,
            only_new=query["status"] == "new",
        )
        next_cursor = pager.encode(page.next_position, scope) if page.next_position else None
        if chosen == "json":
            reply = {"leads": page.leads, "next_cursor": next_cursor}
            figures = current_app.extensions.get("leadsvc.dealer_feed_figures")
            if figures is not None:  # lent by leadsvc.followup
                reply["follow_up"] = figures(db.session, principal.dealer_id)
            return reply
        if chosen == "csv":
            response = Response(leads_csv(page.leads), mimetype=MEDIA_TYPES["csv"])
        else:
            dealer = db.session.get(Dealer, principal.dealer_id)
            body = adf_document(
                page.leads, dealer, current_app.config["LEADSVC_SETTINGS"].public_base_url
            )
            # ADF needs at least one prospect: a page with nothing to send has no content.
            response = Response(
                body or "", status=200 if body else 204, mimetype=MEDIA_TYPES["adf"]
            )
        if next_cursor:
            response.headers["X-Next-Cursor"] = next_cursor
        if page.more:
            args = {**request.args, "cursor": next_cursor}
            response.headers["Link"] = f'<{url_for(request.endpoint, **args)}>; rel="next"'
        return response


@dealer_blp.route("/leads/<int(max=9223372036854775807):lead_id>")
class DealerLead(MethodView):
    @requires("dealer")
    @dealer_blp.response(200, DealerLeadSchema)
    @dealer_blp.alt_response(404, schema=ErrorSchema, description="Not one of this dealer's leads")
    @keyed(dealer_blp)
    def get(self, lead_id: int):
        """One of the calling dealer's leads"""
        record = leads.dealer_lead(db.session, current_principal().dealer_id, lead_id)
        if record is None:
            abort(404, message=NOT_FOUND)
        return record


@dealer_blp.route("/leads/ack")
class DealerLeadsAck(MethodView):
    @requires("dealer")
    @dealer_blp.arguments(AckSchema)
    @dealer_blp.response(200, AckReplySchema)
    @dealer_blp.alt_response(422, schema=ErrorSchema, description="Bad body")
    @keyed(dealer_blp)
    def post(self, body):
        """Acknowledge leads (idempotent); ids that are not this dealer's are reported not found"""
        acknowledged, not_found = leads.acknowledge(
            db.session, current_principal().dealer_id, body["lead_ids"]
        )
        return {"acknowledged": acknowledged, "not_found": not_found}


@admin_blp.route("/dealers")
class AdminDealers(MethodView):
    @requires("admin")
    @admin_blp.response(200, DealerListSchema)
    @keyed(admin_blp)
    def get(self):
        """Every dealer, active or not"""
        return {"dealers": directory.list_dealers(db.session)}


@admin_blp.route("/dealers/<string:code>")
class AdminDealer(MethodView):
    @requires("admin")
    @admin_blp.arguments(DealerUpsertSchema)
    @admin_blp.response(200, ImportReplySchema)
    @admin_blp.alt_response(422, schema=ErrorSchema, description="Invalid dealer; nothing changed")
    @admin_blp.doc(parameters=[CODE_PARAMETER])
    @keyed(admin_blp)
    def put(self, body, code: str):
        """Create or update one dealer by code (validated as the CSV import validates)"""
        row = {key: "" if value is None else str(value) for key, value in body.items()}
        networks = current_app.config["LEADSVC_SETTINGS"].webhook_allowed_networks
        report = directory.import_dealer_rows(
            db.session, [(1, {"code": code, **row})], webhook_networks=networks
        )
        return _import_reply(report)


@admin_blp.route("/dealers/<string:code>/deactivate")
class AdminDealerDeactivate(MethodView):
    @requires("admin")
    @admin_blp.response(200, DealerSchema)
    @admin_blp.alt_response(404, schema=ErrorSchema, description="No such dealer")
    @admin_blp.doc(parameters=[CODE_PARAMETER])
    @keyed(admin_blp)
    def post(self, code: str):
        """Deactivate a dealer; its unacknowledged leads move to their next dealer"""
        try:
            report = directory.deactivate_dealer(db.session, code)
        except LookupError as error:
            abort(404, message=str(error))
        return db.session.scalar(sa.select(Dealer).where(Dealer.code == report.code))


@admin_blp.route("/territories")
class AdminTerritories(MethodView):
    @requires("admin")
    @admin_blp.arguments(TerritoriesSchema)
    @admin_blp.response(200, ImportReplySchema)
    @admin_blp.alt_response(
        422, schema=ErrorSchema, description="Invalid rows (reasons by line); nothing changed"
    )
    @keyed(admin_blp)
    def post(self, body):
        """Assign ZIPs to dealers (territory overrides); all rows are checked first"""
        rows = [(n, row) for n, row in enumerate(body["assignments"], 1)]
        report = directory.assign_territory_rows(db.session, rows)
        return _import_reply(report)


def _import_reply(report: directory.ImportReport):
    reply = {
        "applied": report.applied,
        "rows": [row.__dict__ for row in report.rows],
        "routing_version": report.routes.version if report.routes else None,
    }
    if not report.applied:
        errors = {str(row.line): row.reason for row in report.rejected}
        abort(422, message="Nothing was changed: some rows are invalid.", errors=errors)
    return reply


@admin_blp.route("/leads/unassigned")
class AdminUnassigned(MethodView):
    @requires("admin")
    @admin_blp.arguments(PageQuerySchema, location="query")
    @admin_blp.response(200, LeadPageSchema)
    @admin_blp.alt_response(400, schema=ErrorSchema, description="A cursor not issued for this")
    @admin_blp.alt_response(422, schema=ErrorSchema, description="Bad query parameters")
    @keyed(admin_blp)
    def get(self, query):
        """The unassigned pool: leads no dealer receives (e.g. military ZIPs)"""
        pager = _pager("unassigned")
        after = _decode_cursor(pager, query.get("cursor"), {"u": 1})
        records, last = leads.unassigned_leads(
            db.session, after=after[0] if after else None, limit=query["limit"]
        )
        return {"leads": records, "next_cursor": pager.encode((last,), {"u": 1}) if last else None}


@admin_blp.route("/leads/<int(max=9223372036854775807):lead_id>/dealer")
class AdminLeadDealer(MethodView):
    @requires("admin")
    @admin_blp.arguments(ReassignSchema)
    @admin_blp.response(200, DealerLeadSchema)
    @admin_blp.alt_response(404, schema=ErrorSchema, description="No such lead")
    @admin_blp.alt_response(
        422, schema=ErrorSchema, description="No active dealer with that code, or a bad body"
    )
    @keyed(admin_blp)
    def put(self, body, lead_id: int):
        """Reassign a lead to a dealer (or to the unassigned pool with null); the move is kept"""
        try:
            lead = leads.reassign_lead(db.session, lead_id, body["dealer_code"])
        except LookupError:
            abort(404, message=NOT_FOUND)
        except ValueError as error:
            abort(422, message=str(error), errors={"dealer_code": str(error)})
        return leads.lead_record(lead)
