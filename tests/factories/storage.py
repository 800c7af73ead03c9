"""Factories for the `chomik_storage` database.

Bind a session before use: `bind(session)` (the storage test conftest does it).
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import factory
from factory.alchemy import SQLAlchemyModelFactory

from apps.storage.models import Product, ProductCondition


class ProductFactory(SQLAlchemyModelFactory):
    class Meta:
        model = Product
        sqlalchemy_session_persistence = "flush"

    id = factory.LazyFunction(uuid.uuid4)
    seller_id = factory.LazyFunction(uuid.uuid4)
    title = factory.Sequence(lambda n: f"Sneaker {n}")
    brand = "Nike"
    model = factory.Sequence(lambda n: f"Model {n}")
    size = "42"
    color = "white"
    condition = ProductCondition.NEW
    price = Decimal("100.00")
    currency = "RUB"
    quantity = 10
    reserved = 0
    sold = 0
    description = ""


def bind(session) -> None:
    """Make the storage factories write through `session`."""
    ProductFactory._meta.sqlalchemy_session = session
