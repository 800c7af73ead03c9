"""The internal address check, for the orders service only (service token).

Not routed by the gateway, so not in its public API document either.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from apps.delivery import services
from apps.delivery.models import Address
from apps.delivery.schemas import BuyerAddressSchema, OwnerArgsSchema
from chomik.auth import require_service
from chomik.problems import ProblemSchema
from chomik.web import db_session

blp = Blueprint(
    "address-checks",
    __name__,
    url_prefix="/internal/addresses",
    description="Address ownership checks (internal: service token only)",
)


@blp.route("/<uuid:address_id>")
class BuyerAddress(MethodView):
    @blp.doc(security=[{"bearerAuth": []}])
    @blp.arguments(OwnerArgsSchema, location="query")
    @blp.response(200, BuyerAddressSchema)
    @blp.alt_response(401, schema=ProblemSchema, description="No service token")
    @blp.alt_response(
        404, schema=ProblemSchema, description="Unknown, deleted or another buyer's"
    )
    @blp.alt_response(422, schema=ProblemSchema, description="Missing or bad buyer_id")
    @require_service
    def get(self, args: dict[str, Any], address_id: uuid.UUID) -> Address:
        """Show a buyer's address, if it is theirs and not deleted"""
        return services.get_buyer_address(
            db_session(), buyer_id=args["buyer_id"], address_id=address_id
        )
