"""Internal reads of orders, for other services only (service token).

Not routed by the gateway.
"""

from __future__ import annotations

import uuid

from flask.views import MethodView
from flask_smorest import Blueprint

from apps.orders import services
from apps.orders.schemas import OrderSchema
from apps.orders.services import OrderView
from chomik.auth import require_service
from chomik.problems import ProblemSchema
from chomik.web import db_session

blp = Blueprint(
    "internal_orders",
    __name__,
    url_prefix="/internal/orders",
    description="Orders (internal: service token only)",
)


@blp.route("/<uuid:order_id>")
class InternalOrderById(MethodView):
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.response(200, OrderSchema)
    @blp.alt_response(404, schema=ProblemSchema, description="No such order")
    @require_service
    def get(self, order_id: uuid.UUID) -> OrderView:
        """Show any order"""
        return services.get_order(db_session(), order_id=order_id)
