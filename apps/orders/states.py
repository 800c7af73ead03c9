"""The order state machine: the orders contract's table, used as it is; pure, no I/O.

The statuses and their legal moves live in `clients.orders` (payment moves orders
too); this module adds nothing to them.
"""

from clients.orders import (
    EXPIRABLE,
    TRANSITIONS,
    IllegalTransitionError,
    OrderStatus,
    check_transition,
    has_reached,
    sources_of,
)

__all__ = [
    "EXPIRABLE",
    "TRANSITIONS",
    "IllegalTransitionError",
    "OrderStatus",
    "check_transition",
    "has_reached",
    "sources_of",
]
