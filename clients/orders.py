"""The orders contract: statuses and their legal moves, `move_order`, the typed client.

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
        └── InsufficientStockError      insufficient-stock
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import requests
import sqlalchemy as sa
from sqlalchemy.orm import Session

from chomik.auth import issue_service_token
from chomik.db import UTCDateTime, enum_by_value, new_metadata
from chomik.messaging.kafka import Event
from chomik.messaging.outbox import emit
from chomik.problems import ConflictError as ConflictProblem
from clients._http import (
    BadRequestError,
    ConflictError,
    HttpClient,
    NotFoundError,
    ResponseError,
)
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

__all__ = [
    "EXPIRABLE",
    "TRANSITIONS",
    "IdempotencyKeyReusedError",
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
    "define_order_tables",
    "has_reached",
    "move_order",
    "sources_of",
]


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


# --- the tables `move_order` writes ------------------------------------------------


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
    return OrderMove(order_id, OrderStatus(row.from_status), to, event)


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


# --- the typed HTTP client ---------------------------------------------------------


class OrderNotFoundError(NotFoundError):
    """No such order, or not the caller's."""


class OrderConflictError(ConflictError):
    """The order cannot make the requested move (e.g. cancel after payment)."""


class InsufficientStockError(ConflictError):
    """Some products lack stock; nothing was reserved."""

    @property
    def product_ids(self) -> tuple[str, ...]:
        return tuple(str(p) for p in self.problem.get("product_ids") or ())


class IdempotencyKeyReusedError(BadRequestError):
    """The Idempotency-Key was used before with another request body."""


PROBLEM_TYPES: Mapping[str, type[ResponseError]] = {
    "order-not-found": OrderNotFoundError,
    "illegal-transition": OrderConflictError,
    "insufficient-stock": InsufficientStockError,
    "idempotency-key-reused": IdempotencyKeyReusedError,
}


@dataclass(frozen=True)
class OrderLine:
    """One product line of an order, priced when it was placed."""

    product_id: uuid.UUID
    title: str
    quantity: int
    unit_price: Decimal


@dataclass(frozen=True)
class Order:
    """An order as the orders service answers it."""

    id: uuid.UUID
    buyer_id: uuid.UUID
    status: OrderStatus
    items: tuple[OrderLine, ...]
    total: Decimal
    currency: str
    address_id: uuid.UUID
    expires_at: dt.datetime
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Order:
        return cls(
            id=uuid.UUID(data["id"]),
            buyer_id=uuid.UUID(data["buyer_id"]),
            status=OrderStatus(data["status"]),
            items=tuple(
                OrderLine(
                    product_id=uuid.UUID(item["product_id"]),
                    title=item["title"],
                    quantity=int(item["quantity"]),
                    unit_price=Decimal(item["unit_price"]),
                )
                for item in data["items"]
            ),
            total=Decimal(data["total"]),
            currency=data["currency"],
            address_id=uuid.UUID(data["address_id"]),
            expires_at=dt.datetime.fromisoformat(data["expires_at"]),
            created_at=dt.datetime.fromisoformat(data["created_at"]),
            updated_at=dt.datetime.fromisoformat(data["updated_at"]),
        )


@dataclass(frozen=True)
class Placement:
    """A placed order, and whether this call created it (False: a replay)."""

    order: Order
    created: bool


@dataclass(frozen=True)
class OrderPage:
    """One page of an order list."""

    items: tuple[Order, ...]
    page: int
    page_size: int
    total: int


class OrdersClient:
    """Calls the orders service: internal reads by service token, user calls by
    the user's access token."""

    TOKEN_TTL = 300

    def __init__(
        self,
        base_url: str,
        *,
        service_secret: str,
        caller: str,
        timeout: float = 5.0,
        retries: int = 2,
        session: requests.Session | None = None,
    ) -> None:
        self._secret = service_secret
        self._caller = caller
        self._token = ("", 0.0)
        self.http = HttpClient(
            base_url,
            timeout=timeout,
            retries=retries,
            session=session,
            problem_types=PROBLEM_TYPES,
            token=self._service_token,
        )

    def _service_token(self) -> str:
        token, expires = self._token
        if time.monotonic() > expires:
            token = issue_service_token(self._secret, self._caller, ttl=self.TOKEN_TTL)
            self._token = (token, time.monotonic() + self.TOKEN_TTL / 2)
        return token

    def get_order(self, order_id: uuid.UUID) -> Order:
        """Fetch any order (internal, service token); OrderNotFoundError if none."""
        response = self.http.request("GET", f"/api/v1/internal/orders/{order_id}")
        return Order.from_json(response.json())

    def place_order(
        self,
        *,
        access_token: str,
        idempotency_key: str,
        items: Iterable[tuple[uuid.UUID, int]],
        address_id: uuid.UUID,
    ) -> Placement:
        """Place an order for the token's buyer; retried, as the key makes it safe.

        Raises InsufficientStockError, IdempotencyKeyReusedError or BadRequestError.
        """
        body = {
            "items": [{"product_id": str(p), "quantity": n} for p, n in items],
            "address_id": str(address_id),
        }
        response = self.http.request(
            "POST",
            "/api/v1/orders",
            json=body,
            idempotent=True,
            headers=_user(access_token, {"Idempotency-Key": idempotency_key}),
        )
        return Placement(Order.from_json(response.json()), response.status_code == 201)

    def list_orders(
        self,
        *,
        access_token: str,
        status: OrderStatus | None = None,
        page: int = 1,
        page_size: int = 20,
    ) -> OrderPage:
        """List the orders the token's user may see, newest first."""
        params: dict[str, Any] = {"page": page, "page_size": page_size}
        if status is not None:
            params["status"] = status.value
        body = self.http.request(
            "GET", "/api/v1/orders", params=params, headers=_user(access_token)
        ).json()
        return OrderPage(
            items=tuple(Order.from_json(item) for item in body["items"]),
            page=int(body["page"]),
            page_size=int(body["page_size"]),
            total=int(body["total"]),
        )

    def cancel_order(self, *, access_token: str, order_id: uuid.UUID) -> Order:
        """Cancel an unpaid order; OrderConflictError once it is paid or paying."""
        response = self.http.request(
            "POST",
            f"/api/v1/orders/{order_id}/cancel",
            idempotent=True,
            headers=_user(access_token),
        )
        return Order.from_json(response.json())

    def close(self) -> None:
        """Close the pooled connections."""
        self.http.close()


def _user(access_token: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token}", **dict(extra or {})}
