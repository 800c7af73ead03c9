"""Moving placed orders: cancel, the events that carry them forward, and expiry.

Every move goes through `clients.orders.move_order`, the one conditional UPDATE
that payment's two-phase branch uses as well.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from apps.orders.models import Order, PlacementAttempt
from apps.orders.services.reading import OrderView, access_order, view_of
from chomik.auth import Principal
from chomik.db import utcnow
from chomik.messaging.outbox import emit
from clients.events import OrderAbandoned
from clients.orders import (
    EXPIRABLE,
    IllegalTransitionError,
    OrderStatus,
    deadline_passed,
    has_reached,
    move_order,
)

log = logging.getLogger(__name__)


def cancel_order(
    session: Session, *, user: Principal, order_id: uuid.UUID
) -> OrderView:
    """Cancel an unpaid order (its buyer or an admin); emits order.cancelled.

    Storage releases the stock when it consumes the event. Cancelling a cancelled
    order changes nothing, also when a parallel cancel got there first; once
    payment started or the order is paid, 409. Locks the order row (through
    `advance_order`) to the end of the transaction.
    """
    order = access_order(session, user=user, order_id=order_id)
    if order.status != OrderStatus.CANCELLED:
        who = "an admin" if user.is_admin else "the buyer"
        advance_order(
            session, order_id=order_id, to=OrderStatus.CANCELLED,
            reason=f"cancelled by {who}",
        )  # fmt: skip
        session.refresh(order)
    return view_of(order)


def advance_order(
    session: Session, *, order_id: uuid.UUID, to: OrderStatus, reason: str
) -> bool:
    """Move the order to `to`, unless it is there (or past it, going forward) already.

    Monotonic and idempotent: a repeated or stale event, or a second cancel,
    changes nothing (False); the status is read again under the row lock, so a
    parallel move that got there first counts as there. A move the table refuses
    for any other reason (a cancelled order paid) raises IllegalTransitionError.
    """
    try:
        move_order(session, order_id, to=to, reason=reason)
    except IllegalTransitionError:
        current = session.scalar(
            sa.select(Order.status).where(Order.id == order_id).with_for_update()
        )
        if current is not None and has_reached(current, to):
            return False
        raise
    return True


def expire_order(session: Session, *, order_id: uuid.UUID) -> dt.datetime | None:
    """Expire the order if it is still unpaid past expires_at; emits order.expired.

    Returns when to look at the order again: None once it is expired or no longer
    waiting for payment. Locks the order row to the end of the transaction.
    """
    order = session.scalars(
        sa.select(Order)
        .where(Order.id == order_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if order is None or order.status not in EXPIRABLE:
        return None
    if not deadline_passed(order.expires_at, utcnow()):
        return order.expires_at
    move_order(session, order_id, to=OrderStatus.EXPIRED, reason="not paid in time")
    return None


def release_abandoned_placement(session: Session, *, order_id: uuid.UUID) -> None:
    """Give back the stock of a placement that never stored its order.

    Emits `order.abandoned`: storage releases the reservation by order id
    (idempotently), and a release with nothing reserved leaves a marker there that
    refuses a late reserve for that id. A placement whose order exists is finished:
    its own lifecycle (cancel, expiry) gives the stock back.
    """
    if session.get(Order, order_id) is None:
        emit(session, OrderAbandoned(order_id=str(order_id)))
        log.info("order %s was never stored; its reservation goes back", order_id)


def prune_placement_attempts(session: Session, *, older_than: dt.timedelta) -> int:
    """Delete handled placement attempts older than `older_than`; return how many."""
    result: sa.CursorResult[Any] = session.execute(  # type: ignore[assignment]
        sa.delete(PlacementAttempt).where(
            PlacementAttempt.next_check_at.is_(None),
            PlacementAttempt.created_at < utcnow() - older_than,
        )
    )
    return result.rowcount
