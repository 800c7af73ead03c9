"""Kafka handlers of the storage worker: each calls one service function.

The kit's consumer loop runs each handler in one transaction with the inbox row,
so a duplicate or redelivered event changes nothing.
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy.orm import Session

from apps.storage import services
from apps.storage.errors import ReservationNotFoundError
from chomik.messaging.consuming import Handler, HandlerKey
from clients.events import OrderAbandoned, OrderCancelled, OrderExpired, OrderPaid

log = logging.getLogger(__name__)


def confirm_sale(session: Session, event: OrderPaid) -> None:
    """The order is paid: its reserved stock becomes a sale."""
    services.commit_stock(session, order_id=uuid.UUID(event.order_id))


def return_stock(
    session: Session, event: OrderCancelled | OrderExpired | OrderAbandoned
) -> None:
    """The order will not be paid: its reserved stock goes back on sale.

    An order that never held a reservation has nothing to give back.
    """
    try:
        services.release_stock(session, order_id=uuid.UUID(event.order_id))
    except ReservationNotFoundError:
        log.info("order %s held no reservation; nothing to release", event.order_id)


CONSUMERS: dict[HandlerKey, Handler] = {
    OrderPaid: confirm_sale,
    OrderCancelled: return_stock,
    OrderExpired: return_stock,
    OrderAbandoned: return_stock,
}
