"""Buyers' delivery addresses: add, list and delete their own."""

from __future__ import annotations

import uuid
from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from apps.delivery import services
from apps.delivery.models import Address
from apps.delivery.schemas import (
    AddressCreateSchema,
    AddressPageSchema,
    AddressSchema,
)
from apps.delivery.settings import DeliverySettings
from chomik.auth import current_user, require_role
from chomik.db import Page
from chomik.problems import ProblemSchema
from chomik.schemas import PageArgsSchema
from chomik.web import db_session, settings_of

blp = Blueprint(
    "addresses",
    __name__,
    url_prefix="/addresses",
    description="Buyers' delivery addresses",
)


@blp.route("")
class Addresses(MethodView):
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.arguments(PageArgsSchema, location="query")
    @blp.response(200, AddressPageSchema)
    @blp.alt_response(401, schema=ProblemSchema, description="No valid token")
    @blp.alt_response(403, schema=ProblemSchema, description="Not a buyer")
    @blp.alt_response(422, schema=ProblemSchema, description="Bad page")
    @require_role("buyer")
    def get(self, args: dict[str, Any]) -> Page[Address]:
        """List your addresses

        Newest first; deleted addresses are not listed.
        """
        return services.list_addresses(db_session(), user=current_user(), **args)

    @blp.doc(security=[{"bearerAuth": []}])
    @blp.arguments(AddressCreateSchema)
    @blp.response(201, AddressSchema)
    @blp.alt_response(401, schema=ProblemSchema, description="No valid token")
    @blp.alt_response(403, schema=ProblemSchema, description="Not a buyer")
    @blp.alt_response(
        422,
        schema=ProblemSchema,
        description="Invalid fields (`validation-error`) or a country the carrier "
        "does not serve (`country-not-served`)",
    )
    @require_role("buyer")
    def post(self, fields: dict[str, Any]) -> Address:
        """Add an address

        Every field is trimmed and must not be blank; `phone` is E.164
        (`+79161234567`), `country` an ISO 3166-1 alpha-2 code the carrier serves.
        """
        return services.create_address(
            db_session(),
            user=current_user(),
            fields=fields,
            served_countries=settings_of(DeliverySettings).served_countries,
        )


@blp.route("/<uuid:address_id>")
class AddressById(MethodView):
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.response(204)
    @blp.alt_response(401, schema=ProblemSchema, description="No valid token")
    @blp.alt_response(403, schema=ProblemSchema, description="Not a buyer")
    @blp.alt_response(404, schema=ProblemSchema, description="Unknown or not yours")
    @require_role("buyer")
    def delete(self, address_id: uuid.UUID) -> None:
        """Delete an address

        It is no longer listed nor usable for new orders; shipments already
        made to it are not affected.
        """
        services.delete_address(
            db_session(), user=current_user(), address_id=address_id
        )
