"""Kafka handlers of the delivery worker: each calls one service function.

The handlers need the carrier (an outside system), so the table is built for one
`CarrierClient` by `consumers(...)`. The carrier callback handler is keyed by type
string so that it receives the envelope, whose `occurred_at` the signature is
verified as of. The kit's loop runs each handler in one transaction with its inbox
row: a redelivered event changes nothing. While the carrier is down its client
raises `TransientError`s, and the loop waits them out (never dead-letters them);
the errors of `apps.delivery.errors.BadMessageError` are the message's own fault.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import cast

from sqlalchemy.orm import Session

from apps.delivery import services
from apps.delivery.settings import DeliverySettings
from chomik.messaging.consuming import Handler, HandlerKey
from chomik.messaging.kafka import Envelope, decode
from clients.carrier import CarrierClient
from clients.events import (
    CarrierCallbackReceived,
    OrderCancelled,
    OrderDelivered,
    OrderExpired,
    OrderPaid,
    OrderPlaced,
)

CALLBACK_TYPES = {CarrierCallbackReceived.type: CarrierCallbackReceived}


def hold_address(session: Session, event: OrderPlaced) -> None:
    """A placed order ships to its address: the buyer may not delete it meanwhile."""
    services.use_address(
        session,
        order_id=uuid.UUID(event.order_id),
        address_id=uuid.UUID(event.address_id),
    )


def free_address(
    session: Session, event: OrderCancelled | OrderExpired | OrderDelivered
) -> None:
    """The order ended: its address may be deleted again."""
    services.release_address(session, order_id=uuid.UUID(event.order_id))


def consumers(
    settings: DeliverySettings, carrier: CarrierClient
) -> dict[HandlerKey, Handler]:
    """The `CONSUMERS` table of the delivery worker, bound to its carrier."""
    poll_age = dt.timedelta(seconds=settings.shipment_poll_age)

    def ship_paid_order(session: Session, event: OrderPaid) -> None:
        """A paid order: register its one shipment with the carrier."""
        services.register_shipment(
            session,
            order_id=uuid.UUID(event.order_id),
            buyer_id=uuid.UUID(event.buyer_id),
            address_id=uuid.UUID(event.address_id),
            carrier=carrier,
            poll_age=poll_age,
        )

    def take_carrier_callback(session: Session, envelope: Envelope) -> None:
        """A carrier callback from the gateway: verify it again, move the shipment."""
        # Its type key names this class, so decoding gives one (or raises).
        callback = cast(CarrierCallbackReceived, decode(envelope, CALLBACK_TYPES))
        services.take_carrier_callback(
            session,
            envelope,
            callback,
            secrets=settings.callback_secrets,
            tolerance=settings.signature_tolerance,
            poll_age=poll_age,
        )

    return {
        OrderPlaced: hold_address,
        OrderPaid: ship_paid_order,
        OrderCancelled: free_address,
        OrderExpired: free_address,
        OrderDelivered: free_address,
        CarrierCallbackReceived.type: take_carrier_callback,
    }
