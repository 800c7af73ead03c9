"""Internal stock reservations, for the orders service only (service token).

Not routed by the gateway. Every call is idempotent per order id.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from apps.storage import services
from apps.storage.models import Reservation
from apps.storage.schemas import ReservationCreateSchema, ReservationSchema
from apps.storage.services import StockLine
from chomik.auth import require_service
from chomik.problems import ProblemSchema
from chomik.web import db_session

blp = Blueprint(
    "reservations",
    __name__,
    url_prefix="/internal/reservations",
    description="Stock reservations (internal: service token only)",
)


@blp.route("")
class Reservations(MethodView):
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.arguments(ReservationCreateSchema)
    @blp.response(201, ReservationSchema)
    @blp.alt_response(200, schema=ReservationSchema, description="Repeat: the same one")
    @blp.alt_response(
        404, schema=ProblemSchema, description="Unknown or archived product"
    )
    @blp.alt_response(409, schema=ProblemSchema, description="Not enough stock")
    @blp.alt_response(422, schema=ProblemSchema, description="Bad items")
    @require_service
    def post(self, body: dict[str, Any]) -> tuple[Reservation, int]:
        """Reserve stock for an order

        All items or none. A repeat for the same order and items answers the same
        reservation with 200; other items for the same order are a 409.
        """
        lines = [StockLine(i["product_id"], i["quantity"]) for i in body["items"]]
        outcome = services.reserve_stock(
            db_session(), order_id=body["order_id"], lines=lines
        )
        return outcome.reservation, 201 if outcome.created else 200


@blp.route("/<uuid:order_id>")
class ReservationByOrder(MethodView):
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.response(200, ReservationSchema)
    @blp.alt_response(404, schema=ProblemSchema, description="No reservation")
    @require_service
    def get(self, order_id: uuid.UUID) -> Reservation:
        """Show an order's reservation"""
        return services.get_reservation(db_session(), order_id=order_id)


@blp.route("/<uuid:order_id>/release")
class ReservationRelease(MethodView):
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.response(200, ReservationSchema)
    @blp.alt_response(404, schema=ProblemSchema, description="No reservation")
    @blp.alt_response(409, schema=ProblemSchema, description="Already committed")
    @require_service
    def post(self, order_id: uuid.UUID) -> Reservation:
        """Release an order's reservation (idempotent)"""
        return services.release_stock(db_session(), order_id=order_id)


@blp.route("/<uuid:order_id>/commit")
class ReservationCommit(MethodView):
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.response(200, ReservationSchema)
    @blp.alt_response(404, schema=ProblemSchema, description="No reservation")
    @blp.alt_response(409, schema=ProblemSchema, description="Already released")
    @require_service
    def post(self, order_id: uuid.UUID) -> Reservation:
        """Commit an order's reservation as a sale (idempotent)"""
        return services.commit_stock(db_session(), order_id=order_id)
