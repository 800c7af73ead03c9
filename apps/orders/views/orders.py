"""Orders: buyers place, read and cancel theirs; sellers read their part; admins all."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from flask import current_app, request
from flask.views import MethodView
from flask_smorest import Blueprint

from apps.orders import services
from apps.orders.schemas import (
    OrderCreateSchema,
    OrderPageSchema,
    OrderQueryArgsSchema,
    OrderSchema,
)
from apps.orders.services import OrderPage, OrderRequest, OrderView, Ports
from apps.orders.settings import OrdersSettings
from chomik.auth import current_user, require_role
from chomik.idempotency import HEADER, idempotent, parse_key
from chomik.problems import ProblemSchema
from chomik.web import db_session, runtime, settings_of

blp = Blueprint("orders", __name__, url_prefix="/orders", description="Orders")


def ports() -> Ports:
    """The outside services this app calls, built once by `create_app`."""
    found: Ports = current_app.extensions["orders.ports"]
    return found


@blp.route("")
class Orders(MethodView):
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.arguments(OrderQueryArgsSchema, location="query")
    @blp.response(200, OrderPageSchema)
    @blp.alt_response(401, schema=ProblemSchema, description="No valid token")
    @blp.alt_response(422, schema=ProblemSchema, description="Bad filter or page")
    @require_role()
    def get(self, args: dict[str, Any]) -> OrderPage:
        """List orders

        A buyer sees their own orders; a seller the orders holding their products,
        with only their items and their subtotal as `total`; an admin every order.
        Newest first.
        """
        return services.list_orders(db_session(), user=current_user(), **args)

    @blp.doc(security=[{"bearerAuth": []}])
    @blp.arguments(OrderCreateSchema)
    @blp.response(201, OrderSchema)
    @blp.alt_response(200, schema=OrderSchema, description="Replay: the same order")
    @blp.alt_response(401, schema=ProblemSchema, description="No valid token")
    @blp.alt_response(403, schema=ProblemSchema, description="Not a buyer")
    @blp.alt_response(
        409,
        schema=ProblemSchema,
        description="Not enough stock, too many unpaid orders, or a spent key",
    )
    @blp.alt_response(
        422,
        schema=ProblemSchema,
        description="Bad items or address, mixed currencies, a total no payment takes",
    )
    @require_role("buyer")
    @idempotent("orders.place")
    def post(self, body: dict[str, Any]) -> tuple[OrderView, int]:
        """Place an order

        Reserves the items' stock and prices them as listed now; the order awaits
        payment until `expires_at`, then expires and its stock goes back. A total
        below 0.01 or above 9999999999.99 cannot be paid and is refused (422
        `total-not-payable`). The same Idempotency-Key with the same body answers
        the same order (200). A buyer holds at most `ORDER_MAX_UNPAID` unpaid
        orders at once (409 `too-many-unpaid-orders`).
        """
        settings = settings_of(OrdersSettings)
        order_request = OrderRequest(
            lines={i["product_id"]: i["quantity"] for i in body["items"]},
            address_id=body["address_id"],
        )
        placed = services.place_order(
            db_session(),
            buyer=current_user(),
            request=order_request,
            idempotency_key=parse_key(request.headers.get(HEADER)),
            storage=ports().storage,
            addresses=ports().addresses,
            attempts=runtime().sessions,
            ttl=dt.timedelta(seconds=settings.order_ttl),
            max_unpaid=settings.order_max_unpaid,
        )
        return placed.order, 201 if placed.created else 200


@blp.route("/<uuid:order_id>")
class OrderById(MethodView):
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.response(200, OrderSchema)
    @blp.alt_response(401, schema=ProblemSchema, description="No valid token")
    @blp.alt_response(404, schema=ProblemSchema, description="Unknown or not yours")
    @require_role()
    def get(self, order_id: uuid.UUID) -> OrderView:
        """Show an order

        Its buyer and admins see it whole; a seller sees their part of it.
        """
        return services.show_order(db_session(), user=current_user(), order_id=order_id)


@blp.route("/<uuid:order_id>/cancel")
class OrderCancel(MethodView):
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.response(200, OrderSchema)
    @blp.alt_response(401, schema=ProblemSchema, description="No valid token")
    @blp.alt_response(404, schema=ProblemSchema, description="Unknown or not yours")
    @blp.alt_response(409, schema=ProblemSchema, description="Paid or payment pending")
    @require_role()
    def post(self, order_id: uuid.UUID) -> OrderView:
        """Cancel an order

        Its buyer (before payment) or an admin; its stock goes back on sale.
        Cancelling a cancelled order answers it unchanged.
        """
        return services.cancel_order(
            db_session(), user=current_user(), order_id=order_id
        )
