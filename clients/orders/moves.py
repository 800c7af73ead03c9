"""The tables of the order contract and `move_order`, the one SQL that moves an order.

The orders database's tables that `move_order` writes are defined here once
(`define_order_tables`); the orders app maps its models onto the same definition.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from chomik.db import UTCDateTime, enum_by_value, new_metadata
from chomik.messaging.kafka import Event
from chomik.messaging.outbox import emit
from chomik.metrics import counter
from clients.events import (
    OrderCancelled,
    OrderDelivered,
    OrderExpired,
    OrderPaid,
    OrderPaymentFailed,
    OrderPaymentPending,
    OrderPlaced,
    OrderShipped,
)
from clients.events import OrderItem as EventItem
from clients.orders.states import (
    EXPIRABLE,
    TRANSITIONS,
    IllegalTransitionError,
    OrderStatus,
    sources_of,
)

S = OrderStatus

# Counted where every move is made, in whichever process makes it (orders, payment).
ORDER_TRANSITIONS = counter(
    "order_transitions",
    "Orders moved, by status before and after (placements are order_placement_seconds)",
    ["from_status", "to_status"],
    known=[(a.value, b.value) for a, targets in TRANSITIONS.items() for b in targets],
)


def _status_type() -> sa.Enum:
    """The status stored by value as a varchar (no PostgreSQL enum type to migrate)."""
    return enum_by_value(OrderStatus, 20)


@dataclass(frozen=True)
class OrderTables:
    """The orders database's tables of the order contract."""

    orders: sa.Table
    items: sa.Table
    history: sa.Table


def define_order_tables(metadata: sa.MetaData) -> OrderTables:
    """Define `orders`, `order_items` and `order_status_history` in `metadata`.

    The one definition of these tables: the orders app maps its models onto it
    (and migrates it), `move_order` writes through it.
    """
    now = sa.func.now()
    orders = sa.Table(
        "orders",
        metadata,
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("buyer_id", sa.Uuid(), nullable=False),
        sa.Column("status", _status_type(), nullable=False),
        sa.Column("address_id", sa.Uuid(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("total", sa.Numeric(18, 2, asdecimal=True), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        # The expiry job's lease: due while the order holds unpaid stock.
        sa.Column("next_check_at", UTCDateTime(), nullable=True),
        sa.Column("claim_token", sa.Uuid(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False, server_default=now),
        sa.Column(
            "updated_at",
            UTCDateTime(),
            nullable=False,
            server_default=now,
            onupdate=now,
        ),
        sa.CheckConstraint("total >= 0", name="total_not_negative"),
        sa.Index("ix_orders_buyer_id", "buyer_id", "created_at"),
        sa.Index("ix_orders_created_at", "created_at", "id"),
        sa.Index(
            "ix_orders_next_check_at",
            "next_check_at",
            postgresql_where=sa.text("next_check_at IS NOT NULL"),
        ),
    )
    items = sa.Table(
        "order_items",
        metadata,
        sa.Column(
            "order_id",
            sa.Uuid(),
            sa.ForeignKey("orders.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("product_id", sa.Uuid(), primary_key=True),
        sa.Column("seller_id", sa.Uuid(), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price", sa.Numeric(12, 2, asdecimal=True), nullable=False),
        sa.CheckConstraint("quantity > 0", name="quantity_positive"),
        sa.Index("ix_order_items_seller_id", "seller_id", "order_id"),
    )
    history = sa.Table(
        "order_status_history",
        metadata,
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column(
            "order_id",
            sa.Uuid(),
            sa.ForeignKey("orders.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("from_status", _status_type(), nullable=True),
        sa.Column("to_status", _status_type(), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False, server_default=""),
        sa.Column("at", UTCDateTime(), nullable=False, server_default=now),
        sa.Index("ix_order_status_history_order_id", "order_id", "id"),
    )
    return OrderTables(orders, items, history)


_TABLES = define_order_tables(new_metadata())

_EVENTS: Mapping[OrderStatus, type[Event]] = {
    S.AWAITING_PAYMENT: OrderPlaced,  # placing emits it; no move leads back here
    S.PAYMENT_PENDING: OrderPaymentPending,
    S.PAID: OrderPaid,
    S.PAYMENT_FAILED: OrderPaymentFailed,
    S.SHIPPED: OrderShipped,
    S.DELIVERED: OrderDelivered,
    S.CANCELLED: OrderCancelled,
    S.EXPIRED: OrderExpired,
}


@dataclass(frozen=True)
class OrderMove:
    """What `move_order` did: the order's move and the event it emitted."""

    order_id: uuid.UUID
    from_status: OrderStatus
    to_status: OrderStatus
    event: Event


def move_order(
    session: Session,
    order_id: uuid.UUID,
    *,
    to: OrderStatus,
    reason: str = "",
    payment_id: str | None = None,
) -> OrderMove:
    """Move the order to `to` if the table allows it from its current status.

    One conditional `UPDATE ... WHERE id = :id AND status IN (<legal sources>)`
    (the row lock is held to the end of the caller's transaction), then the
    status-history row and the `order.<status>` outbox row, all in the caller's
    transaction: a plain statement each, so it runs inside a prepared two-phase
    branch too. Raises IllegalTransitionError when no row matched (unknown order,
    or a status the move is not legal from); nothing is written then. The events
    are strict: `order.payment_failed` needs the `payment_id`.
    """
    _check_event_fields(to, payment_id)
    sources = sources_of(to)
    orders, history = _TABLES.orders, _TABLES.history
    # The row's status before the move: read under the row lock the UPDATE takes.
    before = (
        sa.select(orders.c.id, orders.c.status)
        .where(orders.c.id == order_id)
        .with_for_update()
        .subquery("before")
    )
    row = session.execute(
        sa.update(orders)
        .where(orders.c.id == before.c.id, orders.c.status.in_(sources))
        .values(
            status=to,
            updated_at=sa.func.now(),
            next_check_at=orders.c.expires_at if to in EXPIRABLE else None,
        )
        .returning(
            before.c.status.label("from_status"),
            orders.c.buyer_id,
            orders.c.address_id,
            orders.c.currency,
            orders.c.total,
        )
    ).one_or_none()
    if row is None:
        raise _refusal(session, order_id, to)
    session.execute(
        sa.insert(history).values(
            order_id=order_id, from_status=row.from_status, to_status=to, reason=reason
        )
    )
    event = _event(session, order_id, to, row, payment_id)
    emit(session, event)
    moved = OrderMove(order_id, OrderStatus(row.from_status), to, event)
    ORDER_TRANSITIONS.labels(moved.from_status.value, to.value).inc()
    return moved


# What `move_order` knows of every order; an event asking for more gets it passed.
_ORDER_FIELDS = frozenset(
    {"order_id", "buyer_id", "address_id", "currency", "total", "items"}
)


def _check_event_fields(to: OrderStatus, payment_id: str | None) -> None:
    """Refuse, before anything is written, a move whose event would be incomplete."""
    given = _ORDER_FIELDS | ({"payment_id"} if payment_id is not None else set())
    missing = {f.name for f in dataclasses.fields(_EVENTS[to])} - given
    if missing:
        raise TypeError(
            f"moving an order to {to.value} needs {', '.join(sorted(missing))}"
        )


def _refusal(
    session: Session, order_id: uuid.UUID, to: OrderStatus
) -> IllegalTransitionError:
    orders = _TABLES.orders
    current = session.scalar(sa.select(orders.c.status).where(orders.c.id == order_id))
    if current is None:
        return IllegalTransitionError(f"No order {order_id}", status_to=to.value)
    return IllegalTransitionError(
        f"An order {current} cannot become {to.value}",
        status_from=str(current),
        status_to=to.value,
    )


def _event(
    session: Session,
    order_id: uuid.UUID,
    to: OrderStatus,
    row: sa.Row[Any],
    payment_id: str | None,
) -> Event:
    items = _TABLES.items
    lines = session.execute(
        sa.select(items.c.product_id, items.c.quantity)
        .where(items.c.order_id == order_id)
        .order_by(items.c.product_id)
    ).all()
    values: dict[str, Any] = {
        "order_id": str(order_id),
        "buyer_id": str(row.buyer_id),
        "address_id": str(row.address_id),
        "currency": row.currency,
        "total": row.total,
        "items": tuple(
            EventItem(str(line.product_id), line.quantity) for line in lines
        ),
    }
    if payment_id is not None:
        values["payment_id"] = payment_id
    kind = _EVENTS[to]
    return kind(
        **{f.name: values[f.name] for f in dataclasses.fields(kind) if f.name in values}
    )
