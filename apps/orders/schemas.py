"""Marshmallow schemas: the HTTP contract of orders."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import validate

from chomik.schemas import MAX_PAGE_SIZE, Money, PageArgsSchema, PageSchema
from clients.orders import OrderStatus

MAX_QUANTITY = 1_000
MAX_LINES = MAX_PAGE_SIZE  # one catalog lookup prices every line


class OrderLineCreateSchema(ma.Schema):
    product_id = ma.fields.UUID(required=True)
    quantity = ma.fields.Integer(
        required=True, strict=True, validate=validate.Range(min=1, max=MAX_QUANTITY)
    )


class OrderCreateSchema(ma.Schema):
    """The body of POST /orders."""

    items = ma.fields.List(
        ma.fields.Nested(OrderLineCreateSchema),
        required=True,
        validate=validate.Length(min=1, max=MAX_LINES),
    )
    address_id = ma.fields.UUID(required=True)

    @ma.validates_schema
    def _each_product_once(self, data: dict[str, Any], **kwargs: Any) -> None:
        seen: set[Any] = set()
        twice: dict[int, dict[str, list[str]]] = {}
        for index, line in enumerate(data.get("items") or ()):
            if line["product_id"] in seen:
                twice[index] = {"product_id": ["The product appears twice."]}
            seen.add(line["product_id"])
        if twice:
            raise ma.ValidationError({"items": twice})


class OrderItemSchema(ma.Schema):
    product_id = ma.fields.UUID()
    title = ma.fields.String()
    quantity = ma.fields.Integer()
    unit_price = Money()


class OrderSchema(ma.Schema):
    """An order. A seller sees only their own items, and `total` is their subtotal."""

    id = ma.fields.UUID()
    buyer_id = ma.fields.UUID()
    status = ma.fields.Enum(OrderStatus, by_value=True)
    items = ma.fields.List(ma.fields.Nested(OrderItemSchema))
    total = Money()
    currency = ma.fields.String()
    address_id = ma.fields.UUID()
    expires_at = ma.fields.AwareDateTime()
    created_at = ma.fields.AwareDateTime()
    updated_at = ma.fields.AwareDateTime()


class OrderQueryArgsSchema(PageArgsSchema):
    """Filter and page of GET /orders."""

    status = ma.fields.Enum(OrderStatus, by_value=True)


class OrderPageSchema(PageSchema):
    """A page of orders: {items, page, page_size, total}."""

    items = ma.fields.List(ma.fields.Nested(OrderSchema))
