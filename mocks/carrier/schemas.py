"""Marshmallow schemas: the HTTP contract of the carrier mock."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import validate

from mocks.carrier.models import ShipmentStatus


def _text(max_length: int, *, required: bool = False) -> ma.fields.String:
    return ma.fields.String(
        required=required, validate=validate.Length(min=1, max=max_length)
    )


class AddressSchema(ma.Schema):
    """Where the parcel goes; only the country is required (other fields ignored)."""

    class Meta:
        unknown = ma.EXCLUDE

    recipient = _text(200)
    phone = _text(32)
    country = ma.fields.String(
        required=True, validate=validate.Regexp(r"^[A-Za-z]{2}$")
    )
    city = _text(200)
    street = _text(500)
    postal_code = _text(20)


class ShipmentCreateSchema(ma.Schema):
    """The body of POST /shipments."""

    reference = _text(200, required=True)
    address = ma.fields.Nested(AddressSchema, required=True)


class ShipmentSchema(ma.Schema):
    """A shipment as its merchant sees it."""

    id = ma.fields.UUID()
    reference = ma.fields.String()
    status = ma.fields.Enum(ShipmentStatus, by_value=True)
    tracking_number = ma.fields.String()
    tracking_url = ma.fields.String()
    address = ma.fields.Dict()
    created_at = ma.fields.AwareDateTime()
    updated_at = ma.fields.AwareDateTime()


class ShipmentQueryArgsSchema(ma.Schema):
    """GET /shipments?reference=..."""

    reference = _text(200, required=True)


class TrackingSchema(ma.Schema):
    """What anyone with the tracking number sees."""

    tracking_number = ma.fields.String()
    status = ma.fields.Enum(ShipmentStatus, by_value=True)
    updated_at = ma.fields.AwareDateTime()
