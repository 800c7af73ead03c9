"""Shipments: a buyer follows theirs; admins see every one."""

from __future__ import annotations

import uuid
from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from apps.delivery import services
from apps.delivery.schemas import (
    ShipmentPageSchema,
    ShipmentQueryArgsSchema,
    ShipmentSchema,
)
from apps.delivery.services import ShipmentView
from chomik.auth import current_user, require_role
from chomik.db import Page
from chomik.problems import ProblemSchema
from chomik.web import db_session

blp = Blueprint(
    "shipments",
    __name__,
    url_prefix="/shipments",
    description="Shipments of paid orders",
)


@blp.route("")
class Shipments(MethodView):
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.arguments(ShipmentQueryArgsSchema, location="query")
    @blp.response(200, ShipmentPageSchema)
    @blp.alt_response(401, schema=ProblemSchema, description="No valid token")
    @blp.alt_response(422, schema=ProblemSchema, description="Bad filter or page")
    @require_role()
    def get(self, args: dict[str, Any]) -> Page[ShipmentView]:
        """List shipments

        Your own (an admin: every one), newest first; `order_id` picks one
        order's shipment. A paid order has one, made once the carrier took it.
        """
        return services.list_shipments(db_session(), user=current_user(), **args)


@blp.route("/<uuid:shipment_id>")
class ShipmentById(MethodView):
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.response(200, ShipmentSchema)
    @blp.alt_response(401, schema=ProblemSchema, description="No valid token")
    @blp.alt_response(404, schema=ProblemSchema, description="Unknown or not yours")
    @require_role()
    def get(self, shipment_id: uuid.UUID) -> ShipmentView:
        """Show a shipment

        Its status, tracking number and URL, and every status it reached, when.
        """
        return services.show_shipment(
            db_session(), user=current_user(), shipment_id=shipment_id
        )
