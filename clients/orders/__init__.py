"""The orders contract: statuses and their legal moves, `move_order`, the typed client.

`states` holds the table (pure), `moves` the tables and the one SQL that moves an
order, `client` the typed HTTP client; everything is imported from here.

One table decides every move of an order, whichever process makes it: the orders
service itself, and payment inside its two-phase branch over the orders database.

    AWAITING_PAYMENT ──▶ PAYMENT_PENDING ──▶ PAID ──▶ SHIPPED ──▶ DELIVERED
        │    ▲                 │              └──────────────────────▲
        │    └─ PAYMENT_FAILED ◀┘
        ├──▶ CANCELLED   (also from PAYMENT_FAILED)
        └──▶ EXPIRED     (also from PAYMENT_FAILED)

PAID goes straight to DELIVERED when the carrier's "in transit" never reaches us.
The orders database's tables that `move_order` writes are defined here once
(`define_order_tables`); the orders app maps its models onto the same definition.

Errors of the HTTP client (the orders service's problem types):

    ResponseError
    ├── BadRequestError
    │   └── IdempotencyKeyReusedError   idempotency-key-reused
    ├── NotFoundError
    │   └── OrderNotFoundError          order-not-found
    └── ConflictError
        ├── OrderConflictError          illegal-transition
        ├── InsufficientStockError      insufficient-stock
        └── IdempotencyKeySpentError    idempotency-key-spent
"""

from clients.orders.client import (
    IdempotencyKeyReusedError,
    IdempotencyKeySpentError,
    InsufficientStockError,
    Order,
    OrderConflictError,
    OrderLine,
    OrderNotFoundError,
    OrderPage,
    OrdersClient,
    Placement,
)
from clients.orders.moves import OrderMove, OrderTables, define_order_tables, move_order
from clients.orders.states import (
    EXPIRABLE,
    TRANSITIONS,
    IllegalTransitionError,
    OrderStatus,
    check_transition,
    deadline_passed,
    has_reached,
    sources_of,
)

__all__ = [
    "EXPIRABLE",
    "TRANSITIONS",
    "IdempotencyKeyReusedError",
    "IdempotencyKeySpentError",
    "IllegalTransitionError",
    "InsufficientStockError",
    "Order",
    "OrderConflictError",
    "OrderLine",
    "OrderMove",
    "OrderNotFoundError",
    "OrderPage",
    "OrderStatus",
    "OrderTables",
    "OrdersClient",
    "Placement",
    "check_transition",
    "deadline_passed",
    "define_order_tables",
    "has_reached",
    "move_order",
    "sources_of",
]
