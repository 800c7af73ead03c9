"""Payments: their buyer and admins read them."""

from __future__ import annotations

import uuid
from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from apps.payment import services
from apps.payment.schemas import (
    PaymentPageSchema,
    PaymentQueryArgsSchema,
    PaymentSchema,
)
from apps.payment.services import PaymentView
from chomik.auth import current_user, require_role
from chomik.db import Page
from chomik.problems import ProblemSchema
from chomik.web import db_session

blp = Blueprint("payments", __name__, url_prefix="/payments", description="Payments")


@blp.route("")
class Payments(MethodView):
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.arguments(PaymentQueryArgsSchema, location="query")
    @blp.response(200, PaymentPageSchema)
    @blp.alt_response(401, schema=ProblemSchema, description="No valid token")
    @blp.alt_response(422, schema=ProblemSchema, description="Bad filter or page")
    @require_role()
    def get(self, args: dict[str, Any]) -> Page[PaymentView]:
        """List payments

        A buyer sees their own payments, an admin every payment; filter by
        `order_id`. Newest first.
        """
        return services.list_payments(db_session(), user=current_user(), **args)


@blp.route("/<uuid:payment_id>")
class PaymentById(MethodView):
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.response(200, PaymentSchema)
    @blp.alt_response(401, schema=ProblemSchema, description="No valid token")
    @blp.alt_response(404, schema=ProblemSchema, description="Unknown or not yours")
    @require_role()
    def get(self, payment_id: uuid.UUID) -> PaymentView:
        """Show a payment"""
        return services.show_payment(
            db_session(), user=current_user(), payment_id=payment_id
        )
