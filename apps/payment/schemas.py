"""The HTTP contract of payments."""

from __future__ import annotations

import marshmallow as ma

from apps.payment.models import PaymentStatus
from chomik.schemas import Money, PageArgsSchema, PageSchema


class PaymentSchema(ma.Schema):
    """A payment; `pay_url` is where the buyer pays it at the bank."""

    id = ma.fields.UUID()
    order_id = ma.fields.UUID()
    status = ma.fields.Enum(PaymentStatus, by_value=True)
    amount = Money()
    currency = ma.fields.String()
    pay_url = ma.fields.String(allow_none=True)
    created_at = ma.fields.AwareDateTime()
    updated_at = ma.fields.AwareDateTime()


class PaymentQueryArgsSchema(PageArgsSchema):
    """Filter and page of GET /payments."""

    order_id = ma.fields.UUID()


class PaymentPageSchema(PageSchema):
    """A page of payments: {items, page, page_size, total}."""

    items = ma.fields.List(ma.fields.Nested(PaymentSchema))
