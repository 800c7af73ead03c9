"""The order statuses and their legal moves: one table, pure, no I/O."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping

from chomik.problems import ConflictError as ConflictProblem


class OrderStatus(enum.StrEnum):
    AWAITING_PAYMENT = "AWAITING_PAYMENT"
    PAYMENT_PENDING = "PAYMENT_PENDING"
    PAID = "PAID"
    SHIPPED = "SHIPPED"
    DELIVERED = "DELIVERED"
    PAYMENT_FAILED = "PAYMENT_FAILED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"


S = OrderStatus
TRANSITIONS: Mapping[OrderStatus, frozenset[OrderStatus]] = {
    S.AWAITING_PAYMENT: frozenset({S.PAYMENT_PENDING, S.CANCELLED, S.EXPIRED}),
    S.PAYMENT_PENDING: frozenset({S.PAID, S.PAYMENT_FAILED}),
    # A failed payment may be tried again while the reservation holds.
    S.PAYMENT_FAILED: frozenset({S.PAYMENT_PENDING, S.CANCELLED, S.EXPIRED}),
    S.PAID: frozenset({S.SHIPPED, S.DELIVERED}),
    S.SHIPPED: frozenset({S.DELIVERED}),
    S.DELIVERED: frozenset(),
    S.CANCELLED: frozenset(),
    S.EXPIRED: frozenset(),
}

# Statuses in which an order holds stock without being paid: it expires at expires_at.
EXPIRABLE = frozenset({S.AWAITING_PAYMENT, S.PAYMENT_FAILED})

# The way forward of a good order; a stale event never moves an order back along it.
_PROGRESS = (S.AWAITING_PAYMENT, S.PAYMENT_PENDING, S.PAID, S.SHIPPED, S.DELIVERED)


class IllegalTransitionError(ConflictProblem):
    """The order cannot make this move from its status (409 illegal-transition)."""

    type, title = "illegal-transition", "Illegal order transition"


def sources_of(target: OrderStatus) -> frozenset[OrderStatus]:
    """The statuses an order may move to `target` from."""
    return frozenset(s for s, targets in TRANSITIONS.items() if target in targets)


def check_transition(current: OrderStatus, target: OrderStatus) -> None:
    """Raise IllegalTransitionError unless `current → target` is in the table."""
    if target not in TRANSITIONS[current]:
        raise IllegalTransitionError(
            f"An order {current.value} cannot become {target.value}",
            status_from=current.value,
            status_to=target.value,
        )


def has_reached(current: OrderStatus, target: OrderStatus) -> bool:
    """Tell whether an order in `current` is already at or past `target`.

    Only along the way forward: a cancelled or expired order has reached nothing.
    """
    if current not in _PROGRESS or target not in _PROGRESS:
        return current == target
    return _PROGRESS.index(current) >= _PROGRESS.index(target)


def deadline_passed(expires_at: dt.datetime, now: dt.datetime) -> bool:
    """Tell whether an unpaid order's payment deadline has come.

    From `expires_at` on, the expiry job expires the order and no payment may
    start, even before the job got to it: both ask this, with `chomik.db.utcnow()`.
    """
    return expires_at <= now
