"""Database models of the orders service (database `chomik_orders`).

The tables of the order contract (`orders`, `order_items`, `order_status_history`)
are defined once in `clients.orders`, because payment's two-phase branch moves
orders through `clients.orders.move_order`; the models below map onto that one
definition. `placement_attempts` is this service's own.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from chomik.db import TYPE_ANNOTATION_MAP, UTCDateTime, new_metadata
from chomik.idempotency import install_idempotency
from chomik.messaging.outbox import install_messaging
from clients.orders import OrderStatus, define_order_tables


class Base(DeclarativeBase):
    metadata = new_metadata()
    type_annotation_map = TYPE_ANNOTATION_MAP


install_messaging(Base.metadata)
install_idempotency(Base.metadata)
TABLES = define_order_tables(Base.metadata)


class Order(Base):
    """A buyer's order: its lines were priced and their stock reserved at placing."""

    __table__ = TABLES.orders
    __mapper_args__ = {"eager_defaults": True}

    id: Mapped[uuid.UUID]
    buyer_id: Mapped[uuid.UUID]
    status: Mapped[OrderStatus]
    address_id: Mapped[uuid.UUID]
    currency: Mapped[str]
    total: Mapped[Decimal]
    expires_at: Mapped[dt.datetime]
    next_check_at: Mapped[dt.datetime | None]
    claim_token: Mapped[uuid.UUID | None]
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    items: Mapped[list[OrderItem]] = relationship(
        back_populates="order",
        order_by=lambda: OrderItem.product_id,
        cascade="all, delete-orphan",
    )


class OrderItem(Base):
    """One product line of an order, with its seller, title and unit price."""

    __table__ = TABLES.items

    order_id: Mapped[uuid.UUID]
    product_id: Mapped[uuid.UUID]
    seller_id: Mapped[uuid.UUID]
    title: Mapped[str]
    quantity: Mapped[int]
    unit_price: Mapped[Decimal]
    order: Mapped[Order] = relationship(back_populates="items")

    @property
    def subtotal(self) -> Decimal:
        return self.unit_price * self.quantity


class OrderStatusChange(Base):
    """One move of an order, in the order it happened."""

    __table__ = TABLES.history

    id: Mapped[int]
    order_id: Mapped[uuid.UUID]
    from_status: Mapped[OrderStatus | None]
    to_status: Mapped[OrderStatus]
    reason: Mapped[str]
    at: Mapped[dt.datetime]


class PlacementAttempt(Base):
    """A placement that reserved stock and has not committed its order (yet).

    Written and committed before the reservation, deleted in the transaction that
    stores the order. One still here at `next_check_at` belongs to a placement
    that failed or died after reserving: `order.abandoned` releases its
    reservation by order id.
    """

    __tablename__ = "placement_attempts"
    __table_args__ = (sa.Index("ix_placement_attempts_next_check_at", "next_check_at"),)

    order_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    buyer_id: Mapped[uuid.UUID]
    # Due when the order would have expired; NULL once handled (then pruned).
    next_check_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    claim_token: Mapped[uuid.UUID | None]
    created_at: Mapped[dt.datetime] = mapped_column(
        UTCDateTime, server_default=sa.func.now()
    )
