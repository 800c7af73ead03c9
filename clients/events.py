"""The Kafka contract: topic names, the envelope, one frozen dataclass per event type.

Producers build these types and hand them to `chomik.messaging.outbox.emit`; consumers receive
them in their handlers. No topic or event-type string appears anywhere else. Events are
strict: no field has a default, so an incomplete event cannot be built, emitted or
decoded. `EVENT_TYPES` lists every event type in one table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from chomik.messaging.kafka import (
    Envelope,
    Event,
    MalformedMessageError,
    dlq,
    event_table,
)

__all__ = [
    "ALL_TOPICS",
    "BANK_CALLBACKS",
    "CARRIER_CALLBACKS",
    "DELIVERY_EVENTS",
    "EVENT_TYPES",
    "ORDERS_EVENTS",
    "PAYMENTS_EVENTS",
    "STOCK_EVENTS",
    "BankCallbackReceived",
    "CarrierCallbackReceived",
    "Envelope",
    "Event",
    "MalformedMessageError",
    "OrderAbandoned",
    "OrderCancelled",
    "OrderDelivered",
    "OrderExpired",
    "OrderItem",
    "OrderPaid",
    "OrderPaymentFailed",
    "OrderPaymentPending",
    "OrderPlaced",
    "OrderShipped",
    "PaymentFailed",
    "PaymentStarted",
    "PaymentSucceeded",
    "ShipmentCreated",
    "ShipmentDelivered",
    "ShipmentInTransit",
    "ShipmentStatusChanged",
    "StockCommitted",
    "StockReleased",
    "StockReserved",
    "dlq",
]

BANK_CALLBACKS = "bank.callbacks"
PAYMENTS_EVENTS = "payments.events"
ORDERS_EVENTS = "orders.events"
DELIVERY_EVENTS = "delivery.events"
CARRIER_CALLBACKS = "carrier.callbacks"
STOCK_EVENTS = "stock.events"

ALL_TOPICS = (
    BANK_CALLBACKS,
    PAYMENTS_EVENTS,
    ORDERS_EVENTS,
    DELIVERY_EVENTS,
    CARRIER_CALLBACKS,
    STOCK_EVENTS,
)


@dataclass(frozen=True)
class OrderItem:
    """One order line as carried in events."""

    product_id: str
    quantity: int


Items = tuple[OrderItem, ...]


# --- orders.events -------------------------------------------------------------------


@dataclass(frozen=True)
class OrderPlaced(Event):
    """An order was placed with its stock reserved; it awaits payment."""

    type = "order.placed"
    topic = ORDERS_EVENTS

    order_id: str
    buyer_id: str
    address_id: str
    currency: str
    total: Decimal
    items: Items


@dataclass(frozen=True)
class OrderPaymentPending(Event):
    """A payment for the order was started at the bank."""

    type = "order.payment_pending"
    topic = ORDERS_EVENTS

    order_id: str
    buyer_id: str
    total: Decimal
    currency: str


@dataclass(frozen=True)
class OrderPaid(Event):
    """The order's payment succeeded: storage sells the reservation, delivery ships."""

    type = "order.paid"
    topic = ORDERS_EVENTS

    order_id: str
    buyer_id: str
    address_id: str
    items: Items


@dataclass(frozen=True)
class OrderCancelled(Event):
    """The buyer cancelled the order: its reservation is released."""

    type = "order.cancelled"
    topic = ORDERS_EVENTS

    order_id: str
    items: Items


@dataclass(frozen=True)
class OrderExpired(Event):
    """The order was not paid in time: its reservation is released."""

    type = "order.expired"
    topic = ORDERS_EVENTS

    order_id: str
    items: Items


@dataclass(frozen=True)
class OrderPaymentFailed(Event):
    """The order's payment failed; the order may be paid again or expire."""

    type = "order.payment_failed"
    topic = ORDERS_EVENTS

    order_id: str
    payment_id: str


@dataclass(frozen=True)
class OrderAbandoned(Event):
    """A placement reserved stock and never stored its order: the stock goes back."""

    type = "order.abandoned"
    topic = ORDERS_EVENTS

    order_id: str


@dataclass(frozen=True)
class OrderShipped(Event):
    """The carrier has the order's parcel on its way."""

    type = "order.shipped"
    topic = ORDERS_EVENTS

    order_id: str
    buyer_id: str


@dataclass(frozen=True)
class OrderDelivered(Event):
    """The carrier delivered the order."""

    type = "order.delivered"
    topic = ORDERS_EVENTS

    order_id: str
    buyer_id: str


# --- stock.events --------------------------------------------------------------------


@dataclass(frozen=True)
class StockReserved(Event):
    """Stock was reserved for an order."""

    type = "stock.reserved"
    topic = STOCK_EVENTS

    order_id: str
    items: Items


@dataclass(frozen=True)
class StockReleased(Event):
    """An order's reservation went back to stock."""

    type = "stock.released"
    topic = STOCK_EVENTS

    order_id: str
    items: Items


@dataclass(frozen=True)
class StockCommitted(Event):
    """An order's reservation became a sale."""

    type = "stock.committed"
    topic = STOCK_EVENTS

    order_id: str
    items: Items


# --- payments.events -----------------------------------------------------------------


@dataclass(frozen=True)
class PaymentStarted(Event):
    """A payment was opened at the bank; its order awaits the bank's result."""

    type = "payment.started"
    topic = PAYMENTS_EVENTS
    key_field = "payment_id"

    payment_id: str
    order_id: str
    amount: Decimal
    currency: str


@dataclass(frozen=True)
class PaymentSucceeded(Event):
    """The bank settled a payment."""

    type = "payment.succeeded"
    topic = PAYMENTS_EVENTS
    key_field = "payment_id"

    payment_id: str
    order_id: str
    amount: Decimal


@dataclass(frozen=True)
class PaymentFailed(Event):
    """The bank refused a payment."""

    type = "payment.failed"
    topic = PAYMENTS_EVENTS
    key_field = "payment_id"

    payment_id: str
    order_id: str
    reason: str


# --- delivery.events -----------------------------------------------------------------


@dataclass(frozen=True)
class ShipmentStatusChanged(Event):
    """A shipment moved to a new carrier status."""

    type = "shipment.status_changed"
    topic = DELIVERY_EVENTS
    key_field = "order_id"

    shipment_id: str
    order_id: str
    status: str


@dataclass(frozen=True)
class ShipmentCreated(Event):
    """The carrier registered the paid order's shipment: it can be tracked."""

    type = "shipment.created"
    topic = DELIVERY_EVENTS
    key_field = "order_id"

    shipment_id: str
    order_id: str
    buyer_id: str
    tracking_number: str
    tracking_url: str


@dataclass(frozen=True)
class ShipmentInTransit(Event):
    """The carrier picked the order's parcel up: the order is shipped."""

    type = "shipment.in_transit"
    topic = DELIVERY_EVENTS
    key_field = "order_id"

    shipment_id: str
    order_id: str


@dataclass(frozen=True)
class ShipmentDelivered(Event):
    """The carrier delivered the order's parcel."""

    type = "shipment.delivered"
    topic = DELIVERY_EVENTS
    key_field = "order_id"

    shipment_id: str
    order_id: str


# --- callbacks from the outside world (published by the gateway) ---------------------


@dataclass(frozen=True)
class BankCallbackReceived(Event):
    """A signed bank callback, checked at the gateway; payment verifies it again."""

    type = "bank.callback"
    topic = BANK_CALLBACKS
    key_field = "transaction_id"

    transaction_id: str
    body: str
    signature: str
    timestamp: str


@dataclass(frozen=True)
class CarrierCallbackReceived(Event):
    """A signed carrier callback, checked at the gateway; delivery verifies it again."""

    type = "carrier.callback"
    topic = CARRIER_CALLBACKS
    key_field = "shipment_id"

    shipment_id: str
    body: str
    signature: str
    timestamp: str


# Every event type of the system, in one table (decoding looks types up here).
EVENT_TYPES: Mapping[str, type[Event]] = event_table(
    OrderPlaced,
    OrderPaymentPending,
    OrderPaid,
    OrderCancelled,
    OrderExpired,
    OrderPaymentFailed,
    OrderAbandoned,
    OrderShipped,
    OrderDelivered,
    StockReserved,
    StockReleased,
    StockCommitted,
    PaymentStarted,
    PaymentSucceeded,
    PaymentFailed,
    ShipmentStatusChanged,
    ShipmentCreated,
    ShipmentInTransit,
    ShipmentDelivered,
    BankCallbackReceived,
    CarrierCallbackReceived,
)
