"""The storage service layer: the catalog, and stock reservations that never oversell.

Lock contract, for every function that changes stock: the reservation row is taken
first (insert or `SELECT ... FOR UPDATE`), then product rows one at a time in
product-id order. Every transaction touching several products takes them in the
same order, so concurrent orders over overlapping products wait for each other
but never deadlock. Stock only moves through conditional UPDATEs whose WHERE
clause re-checks the rule on the latest row version, and the table's CHECK
constraints hold `0 <= reserved <= quantity` whatever happens.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, make_transient_to_detached, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from apps.storage.errors import (
    InsufficientStockError,
    ProductNotFoundError,
    QuantityBelowReservedError,
    ReservationMismatchError,
    ReservationNotFoundError,
)
from apps.storage.models import (
    SEARCH_TEXT,
    Product,
    ProductCondition,
    Reservation,
    ReservationItem,
    ReservationStatus,
)
from apps.storage.states import transition
from chomik.auth import Principal
from chomik.db import utcnow
from chomik.problems import ForbiddenError, ValidationProblem

SORTS: Mapping[str, tuple[Any, ...]] = {
    "price": (Product.price.asc(), Product.id.asc()),
    "-price": (Product.price.desc(), Product.id.desc()),
    "created_at": (Product.created_at.asc(), Product.id.asc()),
    "-created_at": (Product.created_at.desc(), Product.id.desc()),
}
MAX_SEARCH_WORDS = 8


@dataclass(frozen=True)
class ProductFilters:
    """What the product list is narrowed and ordered by."""

    q: str | None = None
    brand: str | None = None
    size: str | None = None
    color: str | None = None
    condition: ProductCondition | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    seller_id: uuid.UUID | None = None
    sort: str = "-created_at"
    page: int = 1
    page_size: int = 20


@dataclass(frozen=True)
class ProductPage:
    """One page of the product list."""

    items: Sequence[Product]
    page: int
    page_size: int
    total: int


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


# --- the catalog ---------------------------------------------------------------------


def user_uuid(user: Principal) -> uuid.UUID:
    """The caller's user id as a UUID (sellers are identified by it)."""
    try:
        return uuid.UUID(user.id)
    except ValueError as exc:
        raise ForbiddenError("The token's subject is not a user id") from exc


def create_product(
    session: Session, *, user: Principal, fields: Mapping[str, Any]
) -> Product:
    """List a new product owned by the calling seller (or admin)."""
    product = Product(seller_id=user_uuid(user), **fields)
    session.add(product)
    session.flush()
    return product


def access_listed_product(session: Session, product_id: uuid.UUID) -> Product:
    """Return a product that is listed (not archived), or raise ProductNotFoundError."""
    product = session.get(Product, product_id)
    if product is None or product.archived_at is not None:
        raise ProductNotFoundError(f"No product {product_id}")
    return product


def access_own_product(
    session: Session, *, user: Principal, product_id: uuid.UUID
) -> Product:
    """Lock and return a listed product the caller may change, else 404.

    Takes the product's row lock (`FOR UPDATE`) for the rest of the transaction.
    Another seller's product is reported as not found.
    """
    product = session.scalars(
        sa.select(Product)
        .where(Product.id == product_id, Product.archived_at.is_(None))
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if product is None or not (user.is_admin or product.seller_id == user_uuid(user)):
        raise ProductNotFoundError(f"No product {product_id}")
    return product


def update_product(
    session: Session,
    *,
    user: Principal,
    product_id: uuid.UUID,
    changes: Mapping[str, Any],
) -> Product:
    """Change a product's fields; refuse a quantity below what is reserved.

    Holds the product's row lock, so no reservation can slip in between the
    check and the write.
    """
    product = access_own_product(session, user=user, product_id=product_id)
    quantity = changes.get("quantity")
    if quantity is not None and quantity < product.reserved:
        raise QuantityBelowReservedError(
            f"{product.reserved} units are reserved; quantity cannot go below that",
            reserved=product.reserved,
        )
    for name, value in changes.items():
        setattr(product, name, value)
    session.flush()
    return product


def archive_product(
    session: Session, *, user: Principal, product_id: uuid.UUID
) -> None:
    """Take a product off the catalog; it can no longer be listed or reserved.

    Reservations already held on it can still be released or committed.
    """
    product = access_own_product(session, user=user, product_id=product_id)
    product.archived_at = utcnow()
    session.flush()


def list_products(session: Session, *, filters: ProductFilters) -> ProductPage:
    """Return one page of listed products matching the filters, and the total."""
    criteria = list(_criteria(filters))
    total = session.scalar(
        sa.select(sa.func.count()).select_from(Product).where(*criteria)
    )
    items = session.scalars(
        sa.select(Product)
        .where(*criteria)
        .order_by(*SORTS[filters.sort])
        .limit(filters.page_size)
        .offset((filters.page - 1) * filters.page_size)
    ).all()
    return ProductPage(items, filters.page, filters.page_size, total or 0)


def _criteria(filters: ProductFilters) -> Iterable[sa.ColumnElement[bool]]:
    yield Product.archived_at.is_(None)
    for column, value in (
        (Product.brand, filters.brand),
        (Product.size, filters.size),
        (Product.color, filters.color),
        (Product.condition, filters.condition),
        (Product.seller_id, filters.seller_id),
    ):
        if value is not None:
            yield column == value
    if filters.min_price is not None:
        yield Product.price >= filters.min_price
    if filters.max_price is not None:
        yield Product.price <= filters.max_price
    search = sa.literal_column(SEARCH_TEXT, sa.String())
    for word in (filters.q or "").lower().split()[:MAX_SEARCH_WORDS]:
        yield search.like(f"%{_escape_like(word)}%", escape="\\")


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# --- reservations --------------------------------------------------------------------


def reserve_stock(
    session: Session, *, order_id: uuid.UUID, lines: Sequence[StockLine]
) -> ReserveOutcome:
    """Reserve every line for the order, or nothing at all.

    Idempotent per order id: a repeat with the same lines returns the existing
    reservation (whatever its status); different lines are a conflict. The
    reservation row is inserted first (`ON CONFLICT DO NOTHING`, so a concurrent
    repeat waits for the first and then sees it), then each product is taken by
    one statement, in product-id order: a conditional UPDATE feeding the
    reservation line's INSERT. On any failure it raises and the caller's
    transaction rolls back, so nothing changes.
    """
    wanted = _checked_lines(lines)
    reservation = session.scalars(
        insert(Reservation)
        .values(id=uuid.uuid4(), order_id=order_id, status=ReservationStatus.RESERVED)
        .on_conflict_do_nothing(index_elements=[Reservation.order_id])
        .returning(Reservation)
    ).one_or_none()
    if reservation is None:
        return ReserveOutcome(_repeat(session, order_id, wanted), created=False)
    items = [
        _hold(session, reservation.id, product_id, quantity)
        for product_id, quantity in sorted(wanted.items())
    ]
    for item in items:  # already in the database: attach without another INSERT
        make_transient_to_detached(item)
        session.add(item)
    set_committed_value(reservation, "items", items)
    return ReserveOutcome(reservation, created=True)


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
    ).one()
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
    ).one_or_none()
    if reservation is None:
        raise ReservationNotFoundError(f"Order {order_id} holds no reservation")
    return reservation


def release_stock(session: Session, *, order_id: uuid.UUID) -> Reservation:
    """Give the order's reserved units back to stock.

    Idempotent: releasing a released reservation changes nothing; releasing a
    committed one raises IllegalTransitionError. Locks the reservation row, then
    the products in id order.
    """
    return _close(session, order_id, ReservationStatus.RELEASED)


def commit_stock(session: Session, *, order_id: uuid.UUID) -> Reservation:
    """Turn the order's reservation into a sale: quantity and reserved both drop.

    Idempotent: committing a committed reservation changes nothing; committing a
    released one raises IllegalTransitionError. Locks as `release_stock` does.
    """
    return _close(session, order_id, ReservationStatus.COMMITTED)


def _close(
    session: Session, order_id: uuid.UUID, target: ReservationStatus
) -> Reservation:
    reservation = session.scalars(
        sa.select(Reservation)
        .where(Reservation.order_id == order_id)
        .options(selectinload(Reservation.items))
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
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
    return reservation
