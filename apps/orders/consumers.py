"""Kafka handlers of the orders worker: each calls one service function.

The kit's consumer loop runs each handler in one transaction with the inbox row,
so a duplicate or redelivered event changes nothing; `advance_order` makes a
stale one (an order already further along) change nothing too.
"""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from apps.orders import services
from chomik.messaging.consuming import Handler, HandlerKey
from clients.events import PaymentSucceeded, ShipmentDelivered, ShipmentInTransit
from clients.orders import OrderStatus


def mark_paid(session: Session, event: PaymentSucceeded) -> None:
    """The payment succeeded: the order is paid (a no-op when payment moved it)."""
    services.advance_order(
        session,
        order_id=uuid.UUID(event.order_id),
        to=OrderStatus.PAID,
        reason=f"payment {event.payment_id} succeeded",
    )


def mark_shipped(session: Session, event: ShipmentInTransit) -> None:
    """The carrier has the parcel: the order is shipped."""
    services.advance_order(
        session,
        order_id=uuid.UUID(event.order_id),
        to=OrderStatus.SHIPPED,
        reason=f"shipment {event.shipment_id} in transit",
    )


def mark_delivered(session: Session, event: ShipmentDelivered) -> None:
    """The carrier delivered the parcel: the order is delivered."""
    services.advance_order(
        session,
        order_id=uuid.UUID(event.order_id),
        to=OrderStatus.DELIVERED,
        reason=f"shipment {event.shipment_id} delivered",
    )


CONSUMERS: dict[HandlerKey, Handler] = {
    PaymentSucceeded: mark_paid,
    ShipmentInTransit: mark_shipped,
    ShipmentDelivered: mark_delivered,
}
