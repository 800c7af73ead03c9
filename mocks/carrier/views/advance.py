"""Moving a shipment on by hand (tests only: not registered in production)."""

from __future__ import annotations

import uuid
from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from chomik.problems import ProblemSchema
from chomik.web import db_session
from mocks.carrier import services
from mocks.carrier.schemas import ShipmentSchema
from mocks.carrier.views import shown, step

blp = Blueprint(
    "advance",
    __name__,
    url_prefix="/shipments",
    description="Moving shipments on (tests only)",
)


@blp.route("/<uuid:shipment_id>/advance")
class ShipmentAdvance(MethodView):
    @blp.response(200, ShipmentSchema)
    @blp.alt_response(404, schema=ProblemSchema, description="No such shipment")
    @blp.alt_response(409, schema=ProblemSchema, description="Already delivered")
    def post(self, shipment_id: uuid.UUID) -> dict[str, Any]:
        """Move a shipment one status on now"""
        return shown(
            services.advance_shipment(
                db_session(), shipment_id=shipment_id, step=step()
            )
        )
