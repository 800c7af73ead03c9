"""Marshmallow schemas: the HTTP contract of addresses and shipments."""

from __future__ import annotations

import re
from typing import Any

import marshmallow as ma

from apps.delivery.countries import ISO_COUNTRIES
from chomik.schemas import Line as KitLine
from chomik.schemas import PageArgsSchema, PageSchema

# E.164: "+", then 8 to 15 digits, the first (the country code's) never 0.
PHONE = re.compile(r"\+[1-9][0-9]{7,14}", re.ASCII)


class Line(KitLine):
    """A required line of an address (the kit's Line)."""

    def __init__(self, max_length: int, **kwargs: Any) -> None:
        super().__init__(max_length, required=True, **kwargs)


class Phone(Line):
    """A phone number in E.164 form, such as +79161234567."""

    default_error_messages = {"phone": "Must be E.164: + and 8 to 15 digits."}

    def __init__(self) -> None:
        metadata = {"example": "+79161234567", "pattern": f"^{PHONE.pattern}$"}
        super().__init__(16, metadata=metadata)

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if not PHONE.fullmatch(text):
            raise self.make_error("phone")
        return text


class Country(Line):
    """An ISO 3166-1 alpha-2 country code; lower case is accepted and raised."""

    default_error_messages = {"country": "Must be an ISO 3166-1 alpha-2 code."}

    def __init__(self) -> None:
        super().__init__(2, metadata={"example": "RU", "enum": sorted(ISO_COUNTRIES)})

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> str:
        text = super()._deserialize(value, attr, data, **kwargs).upper()
        if text not in ISO_COUNTRIES:
            raise self.make_error("country")
        return text


class AddressCreateSchema(ma.Schema):
    """The body of POST /addresses."""

    recipient = Line(100)
    phone = Phone()
    country = Country()
    city = Line(100)
    street = Line(200)
    postal_code = Line(20)


class AddressSchema(ma.Schema):
    """An address as answered to its buyer."""

    id = ma.fields.UUID()
    recipient = ma.fields.String()
    phone = ma.fields.String()
    country = ma.fields.String()
    city = ma.fields.String()
    street = ma.fields.String()
    postal_code = ma.fields.String()
    created_at = ma.fields.AwareDateTime()


class BuyerAddressSchema(AddressSchema):
    """An address as answered to the orders service: with its buyer."""

    buyer_id = ma.fields.UUID()


class AddressPageSchema(PageSchema):
    """A page of addresses: {items, page, page_size, total}."""

    items = ma.fields.List(ma.fields.Nested(AddressSchema))


class OwnerArgsSchema(ma.Schema):
    """The query of the internal ownership check."""

    buyer_id = ma.fields.UUID(required=True)


class ShipmentEventSchema(ma.Schema):
    """One status a shipment reached, and when."""

    status = ma.fields.String(metadata={"example": "IN_TRANSIT"})
    at = ma.fields.AwareDateTime()


class ShipmentSchema(ma.Schema):
    """A shipment with its tracking and its history, oldest first."""

    id = ma.fields.UUID()
    order_id = ma.fields.UUID()
    status = ma.fields.String(metadata={"example": "CREATED"})
    tracking_number = ma.fields.String()
    tracking_url = ma.fields.String()
    events = ma.fields.List(ma.fields.Nested(ShipmentEventSchema))
    created_at = ma.fields.AwareDateTime()
    updated_at = ma.fields.AwareDateTime()


class ShipmentPageSchema(PageSchema):
    """A page of shipments: {items, page, page_size, total}."""

    items = ma.fields.List(ma.fields.Nested(ShipmentSchema))


class ShipmentQueryArgsSchema(PageArgsSchema):
    """The filter of the shipment list: one order's shipment."""

    order_id = ma.fields.UUID()
