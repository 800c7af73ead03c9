"""Stock reservations: reserve, release and commit, all or nothing, never oversold.

Lock contract, for every function that changes stock: the reservation row is taken
first (insert or `SELECT ... FOR UPDATE`), then product rows one at a time in
product-id order. Every transaction touching several products takes them in the
same order, so concurrent orders over overlapping products wait for each other
but never deadlock. Stock only moves through conditional UPDATEs whose WHERE
clause re-checks the rule on the latest row version, and the table's CHECK
constraints hold `0 <= reserved <= quantity` whatever happens.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, make_transient_to_detached, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from apps.storage.errors import (
    IllegalTransitionError,
    InsufficientStockError,
    ProductNotFoundError,
    ReservationMismatchError,
    ReservationNotFoundError,
)
from apps.storage.metrics import RESERVATIONS, RESERVED_UNITS
from apps.storage.models import Product, Reservation, ReservationItem, ReservationStatus
from apps.storage.states import transition
from chomik.db import compiled_once, utcnow
from chomik.messaging.outbox import emit
from chomik.problems import ValidationProblem
from clients.events import OrderItem, StockCommitted, StockReleased, StockReserved


@dataclass(frozen=True)
class StockLine:
    """One product line of a reservation request."""

    product_id: uuid.UUID
    quantity: int


@dataclass(frozen=True)
class ReserveOutcome:
    """The order's reservation, and whether this call created it."""

    reservation: Reservation
    created: bool


def reserve_stock(
    session: Session, *, order_id: uuid.UUID, lines: Sequence[StockLine]
) -> ReserveOutcome:
    """Reserve every line for the order, or nothing at all.

    Idempotent per order id: a repeat with the same lines returns the existing
    reservation; different lines are a conflict, and so is any reserve for an
    order already released (even one released before it ever reserved: a late
    reserve must not hold stock that nobody will release). The
    reservation row is inserted first (`ON CONFLICT DO NOTHING`, so a concurrent
    repeat waits for the first and then sees it), then each product is taken by
    one statement, in product-id order: a conditional UPDATE feeding the
    reservation line's INSERT. On any failure it raises and the caller's
    transaction rolls back, so nothing changes.
    """
    wanted = _checked_lines(lines)
    reservation = Reservation(
        id=uuid.uuid4(), order_id=order_id, status=ReservationStatus.RESERVED
    )
    row = _open(session, reservation.id, order_id, reservation.status)
    if row is None:
        return ReserveOutcome(_repeat(session, order_id, wanted), created=False)
    reservation.created_at, reservation.updated_at = row.created_at, row.updated_at
    items = [
        _hold(session, reservation.id, product_id, quantity)
        for product_id, quantity in sorted(wanted.items())
    ]
    # Both are in the database already: attach them to the session as loaded.
    for instance in (reservation, *items):
        make_transient_to_detached(instance)
        session.add(instance)
    set_committed_value(reservation, "items", items)
    _count(ReservationStatus.RESERVED, items)
    emit(session, StockReserved(order_id=str(order_id), items=_event_items(items)))
    return ReserveOutcome(reservation, created=True)


def _open_statement() -> sa.Insert:
    """Insert the order's reservation unless it has one (then no row comes back)."""
    table = cast(sa.Table, Reservation.__table__)
    return (
        insert(table)
        .values(
            id=sa.bindparam("id", type_=sa.Uuid()),
            order_id=sa.bindparam("order", type_=sa.Uuid()),
            status=sa.bindparam("status", type_=table.c.status.type),
            created_at=sa.bindparam("now", type_=table.c.created_at.type),
            updated_at=sa.bindparam("now", type_=table.c.updated_at.type),
        )
        .on_conflict_do_nothing(index_elements=[table.c.order_id])
        .returning(table.c.created_at, table.c.updated_at)
    )


_OPEN = compiled_once(_open_statement())


def _open(
    session: Session,
    reservation_id: uuid.UUID,
    order_id: uuid.UUID,
    status: ReservationStatus,
) -> sa.Row[Any] | None:
    """The order's reservation row, inserted now; None if the order has one."""
    values = {"id": reservation_id, "order": order_id, "status": status}
    return session.execute(_OPEN, {**values, "now": utcnow()}).one_or_none()


def _checked_lines(lines: Sequence[StockLine]) -> dict[uuid.UUID, int]:
    errors: dict[str, list[str]] = {}
    wanted: dict[uuid.UUID, int] = {}
    if not lines:
        errors["items"] = ["At least one item is required."]
    for index, line in enumerate(lines):
        if line.quantity < 1:
            errors[f"items.{index}.quantity"] = ["Must be at least 1."]
        if line.product_id in wanted:
            errors[f"items.{index}.product_id"] = ["The product appears twice."]
        wanted[line.product_id] = line.quantity
    if errors:
        raise ValidationProblem(errors)
    return wanted


def _repeat(
    session: Session, order_id: uuid.UUID, wanted: Mapping[uuid.UUID, int]
) -> Reservation:
    reservation = session.scalars(
        sa.select(Reservation)
        .where(Reservation.order_id == order_id)
        .options(selectinload(Reservation.items))
        .execution_options(populate_existing=True)
    ).one()
    if reservation.status == ReservationStatus.RELEASED:
        raise IllegalTransitionError(f"Order {order_id}'s reservation was released")
    held = {item.product_id: item.quantity for item in reservation.items}
    if held != dict(wanted):
        raise ReservationMismatchError(
            f"Order {order_id} already holds a reservation for other items"
        )
    return reservation


def _hold_statement() -> sa.Insert:
    """One round trip: a conditional UPDATE of the product feeding the line's INSERT.

    Built once; the product's row lock is then held only from here to commit.
    """
    products = cast(sa.Table, Product.__table__)
    lines = cast(sa.Table, ReservationItem.__table__)
    quantity = sa.bindparam("units", type_=sa.Integer())
    held = (
        sa.update(products)
        .where(
            products.c.id == sa.bindparam("product", type_=sa.Uuid()),
            products.c.archived_at.is_(None),
            products.c.quantity - products.c.reserved >= quantity,
        )
        .values(reserved=products.c.reserved + quantity, updated_at=sa.func.now())
        .returning(
            products.c.id, products.c.title, products.c.price, products.c.currency
        )
        .cte("held")
    )
    columns = ["reservation_id", "product_id", "quantity", "title", "unit_price"]
    return (
        sa.insert(lines)
        .from_select(
            [*columns, "currency"],
            sa.select(
                sa.bindparam("reservation", type_=sa.Uuid()),
                held.c.id,
                quantity,
                held.c.title,
                held.c.price,
                held.c.currency,
            ),
        )
        .returning(lines.c.title, lines.c.unit_price, lines.c.currency)
    )


_HOLD = _hold_statement()


def _hold(
    session: Session, reservation_id: uuid.UUID, product_id: uuid.UUID, quantity: int
) -> ReservationItem:
    """Take `quantity` units of one product and write the line, or raise."""
    params = {
        "reservation": reservation_id,
        "product": product_id,
        "units": quantity,
    }
    row = session.execute(_HOLD, params).one_or_none()
    if row is None:
        raise _refusal(session, product_id, quantity)
    return ReservationItem(
        reservation_id=reservation_id,
        product_id=product_id,
        quantity=quantity,
        title=row.title,
        unit_price=row.unit_price,
        currency=row.currency,
    )


def _refusal(
    session: Session, product_id: uuid.UUID, quantity: int
) -> ProductNotFoundError | InsufficientStockError:
    row = session.execute(
        sa.select(Product.quantity, Product.reserved, Product.archived_at).where(
            Product.id == product_id
        )
    ).one_or_none()
    if row is None or row.archived_at is not None:
        return ProductNotFoundError(
            f"No product {product_id} can be reserved", product_id=str(product_id)
        )
    RESERVATIONS.labels("insufficient").inc()
    return InsufficientStockError(
        f"Product {product_id}: {quantity} requested, "
        f"{row.quantity - row.reserved} available",
        product_id=str(product_id),
        requested=quantity,
        available=row.quantity - row.reserved,
    )


def get_reservation(session: Session, *, order_id: uuid.UUID) -> Reservation:
    """Return the order's reservation, or raise ReservationNotFoundError."""
    reservation = session.scalars(
        sa.select(Reservation)
        .where(Reservation.order_id == order_id)
        .options(selectinload(Reservation.items))
        .execution_options(populate_existing=True)
    ).one_or_none()
    if reservation is None:
        raise ReservationNotFoundError(f"Order {order_id} holds no reservation")
    return reservation


def release_stock(session: Session, *, order_id: uuid.UUID) -> Reservation:
    """Give the order's reserved units back to stock.

    Idempotent: releasing a released reservation changes nothing; releasing a
    committed one raises IllegalTransitionError. Locks the reservation row, then
    the products in id order. Emits `stock.released` when something was released.
    """
    return _close(session, order_id, ReservationStatus.RELEASED)


def commit_stock(session: Session, *, order_id: uuid.UUID) -> Reservation:
    """Turn the order's reservation into a sale: quantity and reserved both drop.

    Idempotent: committing a committed reservation changes nothing; committing a
    released one raises IllegalTransitionError. Locks as `release_stock` does.
    Emits `stock.committed` when something was committed.
    """
    return _close(session, order_id, ReservationStatus.COMMITTED)


def _close(
    session: Session, order_id: uuid.UUID, target: ReservationStatus
) -> Reservation:
    reservation = _locked(session, order_id)
    if reservation is None and target == ReservationStatus.RELEASED:
        # Released before it reserved (a cancel overtaking the reserve): leave a
        # RELEASED marker so that a late reserve for the order is refused.
        _open(session, uuid.uuid4(), order_id, ReservationStatus.RELEASED)
        reservation = _locked(session, order_id)
    if reservation is None:
        raise ReservationNotFoundError(f"Order {order_id} holds no reservation")
    if not transition(reservation.status, target):
        return reservation
    sold = target == ReservationStatus.COMMITTED
    for item in sorted(reservation.items, key=lambda i: i.product_id):
        values: dict[str, Any] = {"reserved": Product.reserved - item.quantity}
        if sold:
            values["quantity"] = Product.quantity - item.quantity
            values["sold"] = Product.sold + item.quantity
        session.execute(
            sa.update(Product)
            .where(Product.id == item.product_id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    reservation.status = target
    session.flush()
    if not reservation.items:
        return reservation  # a marker: nothing was held, nothing to announce
    _count(target, reservation.items)
    event = StockCommitted if sold else StockReleased
    emit(session, event(order_id=str(order_id), items=_event_items(reservation.items)))
    return reservation


def _count(status: ReservationStatus, items: Sequence[ReservationItem]) -> None:
    outcome = status.value.lower()
    RESERVATIONS.labels(outcome).inc()
    RESERVED_UNITS.labels(outcome).inc(sum(item.quantity for item in items))


def _event_items(items: Sequence[ReservationItem]) -> tuple[OrderItem, ...]:
    return tuple(OrderItem(str(item.product_id), item.quantity) for item in items)


def _locked(session: Session, order_id: uuid.UUID) -> Reservation | None:
    """The order's reservation with its items, its row locked."""
    return session.scalars(
        sa.select(Reservation)
        .where(Reservation.order_id == order_id)
        .options(selectinload(Reservation.items))
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()


def prune_reservations(session: Session, *, older_than: dt.timedelta) -> int:
    """Delete released and committed reservations finished `older_than` ago; count them.

    A finished reservation holds no stock. Its RELEASED marker is what refuses a
    late reserve for a cancelled order, and a repeat commit or release answers from
    it; once it is gone, a reserve for that order would hold stock again, so
    `older_than` must outlast any order's life and any redelivery of its events.
    """
    result = session.execute(
        sa.delete(Reservation).where(
            Reservation.status.in_(
                [ReservationStatus.RELEASED, ReservationStatus.COMMITTED]
            ),
            Reservation.updated_at < sa.func.now() - older_than,
        )
    )
    return result.rowcount  # type: ignore[attr-defined, no-any-return]
