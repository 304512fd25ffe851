"""`GET /api/v1/zips/{zip}`: is a ZIP real, where is it, and which dealer would serve it.

Public and cacheable, so the form can show "Your MINI dealer: ..." before submit. Reads only the
in-memory ZIP directory and routing table.
"""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint, abort
from marshmallow import Schema, fields

from leadsvc.errors import ErrorSchema
from leadsvc.geo.directory import INVALID_ZIP, parse_zip, zip_directory

blp = Blueprint("zips", __name__, url_prefix="/api/v1", description="US ZIP codes and their dealer")

#: Browsers and CDNs may keep an answer this long; routing changes reach new answers within it.
CACHE_SECONDS = 300


class ZipDealerSchema(Schema):
    code = fields.String(metadata={"example": "SC012"})
    name = fields.String(metadata={"example": "MINI of Charleston"})
    distance_km = fields.Float(allow_none=True)
    distance_miles = fields.Float(allow_none=True)
    reason = fields.String(metadata={"description": "territory or nearest"})


class ZipInfoSchema(Schema):
    zip = fields.String(metadata={"example": "29401"})
    valid = fields.Boolean()
    city = fields.String()
    state = fields.String()
    dealer = fields.Nested(ZipDealerSchema, allow_none=True)


@blp.route("/zips/<string:zip_code>")
class ZipInfo(MethodView):
    @blp.response(200, ZipInfoSchema)
    @blp.alt_response(404, schema=ErrorSchema, description="Not a US ZIP code")
    def get(self, zip_code: str):
        """Look up a ZIP code: its place and the MINI dealer that would serve it"""
        from leadsvc.dealers.routing import routing_table

        zip_input = parse_zip(zip_code)
        place = zip_directory().lookup(zip_input.zip5) if zip_input else None
        if place is None:
            abort(404, message=INVALID_ZIP)
        route = routing_table().route_for_zip(zip_input.zip5)
        dealer = None
        if route is not None:
            dealer = {
                "code": route.dealer_code,
                "name": route.dealer_name,
                "reason": route.reason,
                "distance_km": route.distance_km,
                "distance_miles": route.distance_miles,
            }
        body = {
            "zip": zip_input.zip5,
            "valid": True,
            "city": place.city,
            "state": place.state,
            "dealer": dealer,
        }
        return body, 200, {"Cache-Control": f"public, max-age={CACHE_SECONDS}"}
