"""Factories for the `chomik_orders` database.

Bind a session before use: `bind(session)` (the orders test conftest does it).
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import factory
from factory.alchemy import SQLAlchemyModelFactory

from apps.orders.models import Order, OrderItem
from chomik.db import utcnow
from clients.orders import EXPIRABLE, OrderStatus


class OrderItemFactory(SQLAlchemyModelFactory):
    class Meta:
        model = OrderItem
        sqlalchemy_session_persistence = "flush"

    product_id = factory.LazyFunction(uuid.uuid4)
    seller_id = factory.LazyFunction(uuid.uuid4)
    title = factory.Sequence(lambda n: f"Sneaker {n}")
    quantity = 1
    unit_price = Decimal("100.00")


class OrderFactory(SQLAlchemyModelFactory):
    """An order with one line (`lines=[...]` of OrderItemFactory kwargs for more)."""

    class Meta:
        model = Order
        sqlalchemy_session_persistence = "flush"

    id = factory.LazyFunction(uuid.uuid4)
    buyer_id = factory.LazyFunction(uuid.uuid4)
    status = OrderStatus.AWAITING_PAYMENT
    address_id = factory.LazyFunction(uuid.uuid4)
    currency = "RUB"
    expires_at = factory.LazyFunction(lambda: utcnow() + dt.timedelta(minutes=15))
    next_check_at = factory.LazyAttribute(
        lambda o: o.expires_at if o.status in EXPIRABLE else None
    )

    class Params:
        lines = ({},)

    @factory.lazy_attribute
    def items(self):
        return [OrderItemFactory.build(**line) for line in self.lines]

    @factory.lazy_attribute
    def total(self):
        return sum((i.unit_price * i.quantity for i in self.items), Decimal("0"))


def bind(session) -> None:
    """Make the orders factories write through `session`."""
    OrderFactory._meta.sqlalchemy_session = session
    OrderItemFactory._meta.sqlalchemy_session = session
