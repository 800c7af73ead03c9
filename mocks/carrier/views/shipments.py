"""Merchants' shipments (merchant bearer token)."""

from __future__ import annotations

import functools
import hmac
import uuid
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from flask import g
from flask.views import MethodView
from flask_smorest import Blueprint

from chomik.auth import bearer_token
from chomik.problems import ProblemSchema
from chomik.web import db_session, settings_of
from mocks.carrier import services
from mocks.carrier.errors import UnknownMerchantError
from mocks.carrier.schemas import (
    ShipmentCreateSchema,
    ShipmentQueryArgsSchema,
    ShipmentSchema,
)
from mocks.carrier.settings import CarrierSettings
from mocks.carrier.views import shown, step

blp = Blueprint("shipments", __name__, url_prefix="/shipments", description="Shipments")

MERCHANT: dict[str, Any] = {"security": [{"bearerAuth": []}]}
P = ParamSpec("P")
R = TypeVar("R")


def merchant_only(view: Callable[P, R]) -> Callable[P, R]:
    """Refuse a request without a merchant's token (401) before its input is parsed."""

    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        merchant()
        return view(*args, **kwargs)

    return wrapper


def merchant() -> str:
    """The merchant whose token the request carries (401 if none); 503 while down."""
    if "carrier_merchant" in g:
        name: str = g.carrier_merchant
        return name
    token = bearer_token() or ""
    settings = settings_of(CarrierSettings)
    found = None
    for known, name in settings.merchants().items():
        # Every token is compared, in constant time each.
        if hmac.compare_digest(known.encode(), token.encode()):
            found = name
    if found is None:
        raise UnknownMerchantError("A merchant's bearer token is required")
    services.refuse_if_unavailable(db_session(), settings.faults)
    g.carrier_merchant = found
    return found


@blp.route("")
class Shipments(MethodView):
    @merchant_only
    @blp.doc(**MERCHANT)
    @blp.arguments(ShipmentCreateSchema)
    @blp.response(201, ShipmentSchema)
    @blp.alt_response(200, schema=ShipmentSchema, description="Same reference")
    @blp.alt_response(401, schema=ProblemSchema, description="No merchant token")
    @blp.alt_response(422, schema=ProblemSchema, description="Country not served")
    @blp.alt_response(503, schema=ProblemSchema, description="Carrier unavailable")
    def post(self, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """Register a shipment (idempotent by reference)

        The same reference again answers the existing shipment with 200.
        """
        name = merchant()
        settings = settings_of(CarrierSettings)
        request = services.NewShipment(
            merchant=name,
            reference=body["reference"],
            address=body["address"],
            callback_url=settings.carrier_callback_url,
        )
        shipment, created = services.create_shipment(
            db_session(), request, countries=settings.served_countries, step=step()
        )
        return shown(shipment), 201 if created else 200

    @merchant_only
    @blp.doc(**MERCHANT)
    @blp.arguments(ShipmentQueryArgsSchema, location="query")
    @blp.response(200, ShipmentSchema)
    @blp.alt_response(401, schema=ProblemSchema, description="No merchant token")
    @blp.alt_response(404, schema=ProblemSchema, description="No such reference")
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Find the merchant's shipment by its reference"""
        name = merchant()
        return shown(
            services.find_shipment(
                db_session(), merchant=name, reference=args["reference"]
            )
        )


@blp.route("/<uuid:shipment_id>")
class ShipmentById(MethodView):
    @merchant_only
    @blp.doc(**MERCHANT)
    @blp.response(200, ShipmentSchema)
    @blp.alt_response(401, schema=ProblemSchema, description="No merchant token")
    @blp.alt_response(404, schema=ProblemSchema, description="No such shipment")
    def get(self, shipment_id: uuid.UUID) -> dict[str, Any]:
        """Show one of the merchant's shipments"""
        name = merchant()
        return shown(
            services.access_shipment(
                db_session(), merchant=name, shipment_id=shipment_id
            )
        )
