"""Factories for the `chomik_delivery` database.

Bind a session before use: `bind(session)` (the delivery test conftest does it).
"""

from __future__ import annotations

import uuid

import factory
from factory.alchemy import SQLAlchemyModelFactory

from apps.delivery.models import Address, Shipment, ShipmentEvent, ShipmentStatus
from chomik.db import utcnow


class AddressFactory(SQLAlchemyModelFactory):
    class Meta:
        model = Address
        sqlalchemy_session_persistence = "flush"

    id = factory.LazyFunction(uuid.uuid4)
    buyer_id = factory.LazyFunction(uuid.uuid4)
    recipient = factory.Sequence(lambda n: f"Buyer {n}")
    phone = "+79161234567"
    country = "RU"
    city = "Moscow"
    street = factory.Sequence(lambda n: f"Tverskaya {n}")
    postal_code = "125009"
    deleted_at = None


class ShipmentFactory(SQLAlchemyModelFactory):
    class Meta:
        model = Shipment
        sqlalchemy_session_persistence = "flush"

    id = factory.LazyFunction(uuid.uuid4)
    order_id = factory.LazyFunction(uuid.uuid4)
    buyer_id = factory.LazyFunction(uuid.uuid4)
    address_id = factory.LazyFunction(uuid.uuid4)
    status = ShipmentStatus.CREATED
    carrier_shipment_id = factory.LazyFunction(uuid.uuid4)
    tracking_number = factory.Sequence(lambda n: f"TRK{n:08d}")
    tracking_url = factory.LazyAttribute(
        lambda s: f"http://carrier.test/api/v1/tracking/{s.tracking_number}"
    )
    next_check_at = None


class ShipmentEventFactory(SQLAlchemyModelFactory):
    class Meta:
        model = ShipmentEvent
        sqlalchemy_session_persistence = "flush"

    status = ShipmentStatus.CREATED
    at = factory.LazyFunction(utcnow)


def bind(session) -> None:
    """Make the delivery factories write through `session`."""
    for kind in (AddressFactory, ShipmentFactory, ShipmentEventFactory):
        kind._meta.sqlalchemy_session = session
