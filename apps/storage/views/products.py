"""The public catalog: browse anonymously; sellers and admins list and edit products."""

from __future__ import annotations

import uuid
from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from apps.storage import services
from apps.storage.models import Product
from apps.storage.schemas import (
    ProductCreateSchema,
    ProductPageSchema,
    ProductQueryArgsSchema,
    ProductSchema,
    ProductUpdateSchema,
)
from apps.storage.services import ProductFilters, ProductPage
from chomik.auth import current_user, optional_token, require_role
from chomik.problems import ProblemSchema
from chomik.web import db_session

blp = Blueprint(
    "products", __name__, url_prefix="/products", description="The sneaker catalog"
)
SELLERS = ("seller", "admin")


@blp.route("")
class Products(MethodView):
    @blp.arguments(ProductQueryArgsSchema, location="query")
    @blp.response(200, ProductPageSchema)
    @blp.alt_response(401, schema=ProblemSchema, description="A bad token")
    @blp.alt_response(422, schema=ProblemSchema, description="Bad filter or page")
    @optional_token  # a bad token is still a 401, even on a public page
    def get(self, args: dict[str, Any]) -> ProductPage:
        """List products

        Anyone may browse. `q` matches words in title, brand and model; archived
        products are never listed.
        """
        return services.list_products(db_session(), filters=ProductFilters(**args))

    @blp.doc(security=[{"bearerAuth": []}])
    @blp.arguments(ProductCreateSchema)
    @blp.response(201, ProductSchema)
    @blp.alt_response(401, schema=ProblemSchema, description="No valid token")
    @blp.alt_response(403, schema=ProblemSchema, description="Not a seller or admin")
    @blp.alt_response(422, schema=ProblemSchema, description="Invalid product")
    @require_role(*SELLERS)
    def post(self, fields: dict[str, Any]) -> Product:
        """Create a product

        The caller becomes its seller.
        """
        return services.create_product(db_session(), user=current_user(), fields=fields)


@blp.route("/<uuid:product_id>")
class ProductById(MethodView):
    @blp.response(200, ProductSchema)
    @blp.alt_response(404, schema=ProblemSchema, description="Unknown or archived")
    @optional_token
    def get(self, product_id: uuid.UUID) -> Product:
        """Show a product"""
        return services.access_listed_product(db_session(), product_id)

    @blp.doc(security=[{"bearerAuth": []}])
    @blp.arguments(ProductUpdateSchema)
    @blp.response(200, ProductSchema)
    @blp.alt_response(404, schema=ProblemSchema, description="Unknown or not yours")
    @blp.alt_response(409, schema=ProblemSchema, description="Quantity below reserved")
    @blp.alt_response(422, schema=ProblemSchema, description="Invalid fields")
    @require_role(*SELLERS)
    def patch(self, changes: dict[str, Any], product_id: uuid.UUID) -> Product:
        """Update a product

        Only its seller or an admin; `id` and `seller_id` cannot change.
        """
        return services.update_product(
            db_session(), user=current_user(), product_id=product_id, changes=changes
        )

    @blp.doc(security=[{"bearerAuth": []}])
    @blp.response(204)
    @blp.alt_response(404, schema=ProblemSchema, description="Unknown or not yours")
    @require_role(*SELLERS)
    def delete(self, product_id: uuid.UUID) -> None:
        """Archive a product

        It is no longer listed or orderable; reservations already held stay valid.
        """
        services.archive_product(
            db_session(), user=current_user(), product_id=product_id
        )
