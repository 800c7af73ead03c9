"""Reading orders: who may see which order, and what of it."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from apps.orders.errors import OrderNotFoundError
from apps.orders.models import Order, OrderItem
from chomik.auth import Principal, user_uuid
from chomik.db import Page, paginate
from clients.orders import OrderStatus


@dataclass(frozen=True)
class OrderLine:
    """One line of an order as shown."""

    product_id: uuid.UUID
    title: str
    quantity: int
    unit_price: Decimal


@dataclass(frozen=True)
class OrderView:
    """An order as one viewer may see it (a seller: only their lines and subtotal)."""

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


OrderPage = Page[OrderView]


def view_of(order: Order, *, seller_id: uuid.UUID | None = None) -> OrderView:
    """The order as shown: whole, or only `seller_id`'s lines and their subtotal."""
    items = [i for i in order.items if seller_id is None or i.seller_id == seller_id]
    total = (
        order.total
        if seller_id is None
        else sum((i.subtotal for i in items), Decimal("0"))
    )
    return OrderView(
        id=order.id,
        buyer_id=order.buyer_id,
        status=order.status,
        items=tuple(
            OrderLine(i.product_id, i.title, i.quantity, i.unit_price) for i in items
        ),
        total=total,
        currency=order.currency,
        address_id=order.address_id,
        expires_at=order.expires_at,
        created_at=order.created_at,
        updated_at=order.updated_at,
    )


def _seller_view(user: Principal) -> uuid.UUID | None:
    """The seller whose part of orders the caller sees; None: whole orders."""
    if user.is_admin or not user.has_role("seller"):
        return None
    return user_uuid(user)


def _visible(user: Principal) -> list[sa.ColumnElement[bool]]:
    if user.is_admin:
        return []
    me = user_uuid(user)
    if user.has_role("seller"):
        sold = sa.select(OrderItem.order_id).where(
            OrderItem.seller_id == me, OrderItem.order_id == Order.id
        )
        return [sa.or_(Order.buyer_id == me, sold.exists())]
    return [Order.buyer_id == me]


def access_order(session: Session, *, user: Principal, order_id: uuid.UUID) -> Order:
    """Return the caller's own order (any order for an admin), else 404.

    Another buyer's order, and an order a seller only sold into, are not found.
    """
    order = session.scalars(
        sa.select(Order)
        .where(Order.id == order_id)
        .options(selectinload(Order.items))
        .execution_options(populate_existing=True)
    ).one_or_none()
    if order is None or not (user.is_admin or order.buyer_id == user_uuid(user)):
        raise OrderNotFoundError(f"No order {order_id}")
    return order


def show_order(session: Session, *, user: Principal, order_id: uuid.UUID) -> OrderView:
    """The order as the caller may see it: buyer and admin whole, a seller their part.

    Raises OrderNotFoundError for an order the caller has no part in.
    """
    order = session.scalars(
        sa.select(Order)
        .where(Order.id == order_id, *_visible(user))
        .options(selectinload(Order.items))
    ).one_or_none()
    if order is None:
        raise OrderNotFoundError(f"No order {order_id}")
    seller = _seller_view(user)
    return view_of(order, seller_id=None if order.buyer_id == seller else seller)


def get_order(session: Session, *, order_id: uuid.UUID) -> OrderView:
    """Any order, whole (internal callers); OrderNotFoundError if there is none."""
    order = session.get(Order, order_id, options=[selectinload(Order.items)])
    if order is None:
        raise OrderNotFoundError(f"No order {order_id}")
    return view_of(order)


def list_orders(
    session: Session,
    *,
    user: Principal,
    status: OrderStatus | None = None,
    page: int = 1,
    page_size: int = 20,
) -> OrderPage:
    """One page of the orders the caller may see, newest first, and the total.

    A buyer sees their own orders, a seller the orders holding their products
    (only their lines), an admin every order.
    """
    criteria = _visible(user)
    if status is not None:
        criteria.append(Order.status == status)
    page_of = paginate(
        session,
        sa.select(Order)
        .where(*criteria)
        .order_by(Order.created_at.desc(), Order.id.desc())
        .options(selectinload(Order.items)),
        page=page,
        page_size=page_size,
    )
    seller = _seller_view(user)
    views = [
        view_of(o, seller_id=None if o.buyer_id == seller else seller)
        for o in page_of.items
    ]
    return OrderPage(views, page, page_size, page_of.total)


def count_orders_by_status(session: Session) -> dict[OrderStatus, int]:
    """How many orders are in each status (every status, zero included)."""
    rows = session.execute(
        sa.select(Order.status, sa.func.count()).group_by(Order.status)
    ).all()
    counts = dict.fromkeys(OrderStatus, 0)
    for status, count in rows:
        counts[status] = count
    return counts
