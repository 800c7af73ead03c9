"""Public tracking by number (what `tracking_url` shows a customer)."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from chomik.problems import ProblemSchema
from chomik.web import db_session
from mocks.carrier import services
from mocks.carrier.models import Shipment
from mocks.carrier.schemas import TrackingSchema

blp = Blueprint(
    "tracking", __name__, url_prefix="/tracking", description="Parcel tracking"
)


@blp.route("/<string:tracking_number>")
class TrackingByNumber(MethodView):
    @blp.response(200, TrackingSchema)
    @blp.alt_response(404, schema=ProblemSchema, description="Unknown number")
    def get(self, tracking_number: str) -> Shipment:
        """Show where a parcel is"""
        return services.track_shipment(db_session(), tracking_number)
