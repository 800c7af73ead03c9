"""Complete order events for tests: every field given, overridable by keyword."""

from __future__ import annotations

import uuid
from typing import Any

from clients.events import OrderCancelled, OrderExpired, OrderItem, OrderPaid


def order_items(*lines: tuple[Any, int]) -> tuple[OrderItem, ...]:
    """`OrderItem`s from (product id, quantity) pairs."""
    return tuple(OrderItem(str(product_id), quantity) for product_id, quantity in lines)


def order_paid(order_id: Any, **fields: Any) -> OrderPaid:
    """An `order.paid` event of the order, with a buyer, an address and no items."""
    values: dict[str, Any] = {
        "buyer_id": str(uuid.uuid4()),
        "address_id": str(uuid.uuid4()),
        "items": (),
        **fields,
    }
    return OrderPaid(order_id=str(order_id), **values)


def order_cancelled(order_id: Any, **fields: Any) -> OrderCancelled:
    """An `order.cancelled` event of the order."""
    return OrderCancelled(order_id=str(order_id), **{"items": (), **fields})


def order_expired(order_id: Any, **fields: Any) -> OrderExpired:
    """An `order.expired` event of the order."""
    return OrderExpired(order_id=str(order_id), **{"items": (), **fields})
