"""Factories for the `chomik_delivery` database.

Bind a session before use: `bind(session)` (the delivery test conftest does it).
"""

from __future__ import annotations

import uuid

import factory
from factory.alchemy import SQLAlchemyModelFactory

from apps.delivery.models import Address


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


def bind(session) -> None:
    """Make the delivery factories write through `session`."""
    AddressFactory._meta.sqlalchemy_session = session
