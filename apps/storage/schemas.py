"""Marshmallow schemas: the HTTP contract of the catalog and of reservations."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

import marshmallow as ma
from marshmallow import validate

from apps.storage.models import ProductCondition
from apps.storage.services import SORTS

MAX_PRICE = Decimal("9999999999.99")  # numeric(12, 2)
MAX_QUANTITY = 1_000_000


_DECIMAL_TEXT = re.compile(r"-?\d{1,12}(\.\d{1,12})?", re.ASCII)


class Money(ma.fields.Field[Decimal]):
    """A decimal string with at most two places ("129.90"); never a float."""

    default_error_messages = {
        "invalid": 'Not a decimal string such as "129.90".',
        "places": "At most two decimal places.",
        "range": f"Must be between 0 and {MAX_PRICE}.",
    }

    def __init__(self, **kwargs: Any) -> None:
        metadata = {"type": "string", "format": "decimal", "example": "129.90"}
        super().__init__(metadata={**metadata, **kwargs.pop("metadata", {})}, **kwargs)

    def _serialize(
        self, value: Decimal | None, attr: str | None, obj: Any, **kwargs: Any
    ) -> str | None:
        return None if value is None else str(value.quantize(Decimal("0.01")))

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self.make_error("invalid")
        # A plain decimal string only: no exponent, no spaces, ASCII digits.
        if isinstance(value, str) and not _DECIMAL_TEXT.fullmatch(value):
            raise self.make_error("invalid")
        try:
            amount = Decimal(str(value).strip())
        except InvalidOperation as exc:
            raise self.make_error("invalid") from exc
        if not amount.is_finite():
            raise self.make_error("invalid")
        exponent = amount.as_tuple().exponent
        if isinstance(exponent, int) and exponent < -2:
            raise self.make_error("places")
        if not Decimal(0) <= amount <= MAX_PRICE:
            raise self.make_error("range")
        return amount


def _text(max_length: int, *, required: bool = True) -> ma.fields.String:
    return ma.fields.String(
        required=required, validate=validate.Length(min=1, max=max_length)
    )


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


class ProductQueryArgsSchema(ma.Schema):
    """Filters, sort and page of GET /products."""

    q = ma.fields.String(validate=validate.Length(max=200))
    brand = ma.fields.String()
    size = ma.fields.String()
    color = ma.fields.String()
    condition = ma.fields.Enum(ProductCondition, by_value=True)
    min_price = Money()
    max_price = Money()
    seller_id = ma.fields.UUID()
    sort = ma.fields.String(
        load_default="-created_at", validate=validate.OneOf(list(SORTS))
    )
    page = ma.fields.Integer(
        load_default=1, validate=validate.Range(min=1, max=1_000_000)
    )
    page_size = ma.fields.Integer(
        load_default=20, validate=validate.Range(min=1, max=100)
    )

    @ma.validates_schema
    def _price_range(self, data: dict[str, Any], **kwargs: Any) -> None:
        low, high = data.get("min_price"), data.get("max_price")
        if low is not None and high is not None and low > high:
            raise ma.ValidationError("Must not exceed max_price.", "min_price")


class ProductPageSchema(ma.Schema):
    """A page of products: {items, page, page_size, total}."""

    items = ma.fields.List(ma.fields.Nested(ProductSchema))
    page = ma.fields.Integer()
    page_size = ma.fields.Integer()
    total = ma.fields.Integer()


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
