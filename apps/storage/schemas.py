"""Marshmallow schemas: the HTTP contract of the catalog and of reservations."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import validate

from apps.storage.models import ProductCondition
from apps.storage.services import SORTS
from chomik.schemas import MAX_PAGE_SIZE, Line, Money, PageArgsSchema, PageSchema

MAX_QUANTITY = 1_000_000


def _text(max_length: int, *, required: bool = True) -> Line:
    # Trimmed, never blank, no control, bidi or zero-width characters.
    return Line(max_length, required=required)


class ProductSchema(ma.Schema):
    """A product as answered to everyone."""

    id = ma.fields.UUID(dump_only=True)
    seller_id = ma.fields.UUID(dump_only=True)
    title = ma.fields.String()
    brand = ma.fields.String()
    model = ma.fields.String()
    size = ma.fields.String()
    color = ma.fields.String()
    condition = ma.fields.Enum(ProductCondition, by_value=True)
    price = Money()
    currency = ma.fields.String()
    quantity = ma.fields.Integer()
    available = ma.fields.Integer(dump_only=True)
    description = ma.fields.String()
    created_at = ma.fields.AwareDateTime(dump_only=True)
    updated_at = ma.fields.AwareDateTime(dump_only=True)


class ProductCreateSchema(ma.Schema):
    """The body of POST /products."""

    title = _text(200)
    brand = _text(100)
    model = _text(100)
    size = _text(20)
    color = _text(50)
    condition = ma.fields.Enum(ProductCondition, by_value=True, required=True)
    price = Money(required=True)
    currency = ma.fields.String(
        load_default="RUB", validate=validate.Regexp(r"^[A-Z]{3}$")
    )
    quantity = ma.fields.Integer(
        required=True, strict=True, validate=validate.Range(min=1, max=MAX_QUANTITY)
    )
    description = ma.fields.String(load_default="", validate=validate.Length(max=5000))


class ProductUpdateSchema(ma.Schema):
    """The body of PATCH /products/{id}: any product field; ids cannot change."""

    title = _text(200, required=False)
    brand = _text(100, required=False)
    model = _text(100, required=False)
    size = _text(20, required=False)
    color = _text(50, required=False)
    condition = ma.fields.Enum(ProductCondition, by_value=True)
    price = Money()
    currency = ma.fields.String(validate=validate.Regexp(r"^[A-Z]{3}$"))
    # Zero is allowed here: a seller may mark a product sold out.
    quantity = ma.fields.Integer(
        strict=True, validate=validate.Range(min=0, max=MAX_QUANTITY)
    )
    description = ma.fields.String(validate=validate.Length(max=5000))


class ProductQueryArgsSchema(PageArgsSchema):
    """Filters, sort and page of GET /products."""

    q = ma.fields.String(validate=validate.Length(max=200))
    brand = ma.fields.String()
    size = ma.fields.String()
    color = ma.fields.String()
    condition = ma.fields.Enum(ProductCondition, by_value=True)
    min_price = Money()
    max_price = Money()
    seller_id = ma.fields.UUID()
    ids = ma.fields.List(
        ma.fields.UUID(),
        data_key="id",
        validate=validate.Length(max=MAX_PAGE_SIZE),
        metadata={"description": "only these products (repeat `id`, at most 100)"},
    )
    sort = ma.fields.String(
        load_default="-created_at", validate=validate.OneOf(list(SORTS))
    )


class ProductPageSchema(PageSchema):
    """A page of products: {items, page, page_size, total}."""

    items = ma.fields.List(ma.fields.Nested(ProductSchema))


class StockLineSchema(ma.Schema):
    product_id = ma.fields.UUID(required=True)
    quantity = ma.fields.Integer(
        required=True, strict=True, validate=validate.Range(min=1, max=MAX_QUANTITY)
    )


class ReservationCreateSchema(ma.Schema):
    """The body of POST /internal/reservations."""

    order_id = ma.fields.UUID(required=True)
    items = ma.fields.List(
        ma.fields.Nested(StockLineSchema),
        required=True,
        validate=validate.Length(min=1),
    )


class ReservationItemSchema(ma.Schema):
    product_id = ma.fields.UUID()
    quantity = ma.fields.Integer()
    title = ma.fields.String()
    unit_price = Money()
    currency = ma.fields.String()


class ReservationSchema(ma.Schema):
    """A reservation: the stock held for one order."""

    id = ma.fields.UUID()
    order_id = ma.fields.UUID()
    status = ma.fields.String()
    items = ma.fields.List(ma.fields.Nested(ReservationItemSchema))
    created_at = ma.fields.AwareDateTime()
    updated_at = ma.fields.AwareDateTime()
