"""The start of an order's payment (`POST /orders/{id}/payment`, routed to payment)."""

from __future__ import annotations

import uuid

from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint

from apps.payment import services
from apps.payment.schemas import PaymentSchema
from apps.payment.services import PaymentView, Ports
from chomik.auth import current_user, require_role
from chomik.problems import ProblemSchema

blp = Blueprint(
    "payment_starts",
    __name__,
    url_prefix="/orders",
    description="Paying an order",
)


def ports() -> Ports:
    """The bank client and the coordinator, built once by `create_app`."""
    found: Ports = current_app.extensions["payment.ports"]
    return found


@blp.route("/<uuid:order_id>/payment")
class OrderPayment(MethodView):
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.response(201, PaymentSchema)
    @blp.alt_response(200, schema=PaymentSchema, description="The open payment again")
    @blp.alt_response(401, schema=ProblemSchema, description="No valid token")
    @blp.alt_response(404, schema=ProblemSchema, description="Unknown or not yours")
    @blp.alt_response(409, schema=ProblemSchema, description="The order is not payable")
    @blp.alt_response(
        422,
        schema=ProblemSchema,
        description="The bank refused the payment (its amount): nothing stored",
    )
    @blp.alt_response(
        503, schema=ProblemSchema, description="The bank is unavailable: nothing stored"
    )
    @require_role("buyer", "admin")
    def post(self, order_id: uuid.UUID) -> tuple[PaymentView, int]:
        """Pay an order

        Opens a payment at the bank and answers its `pay_url`; the order becomes
        PAYMENT_PENDING. While that payment is PENDING the same payment is
        answered again (200), never a second one. A payment the bank refuses
        (an amount it does not take) is a 422 `payment-refused`.
        """
        started = services.start_payment(
            ports(), user=current_user(), order_id=order_id
        )
        return started.payment, 201 if started.created else 200
