"""Database models of the storage service (database `chomik_storage`).

A product's stock is `quantity` units on hand, of which `reserved` are held by
unpaid orders; `available = quantity - reserved`. A committed reservation turns
into `sold` units and leaves `quantity`. The CHECK constraints are the last line
of defence: whatever the code does, `0 <= reserved <= quantity` holds.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from chomik.db import (
    TYPE_ANNOTATION_MAP,
    TimestampMixin,
    UTCDateTime,
    enum_by_value,
    new_metadata,
)
from chomik.messaging.outbox import install_messaging


class Base(DeclarativeBase):
    metadata = new_metadata()
    type_annotation_map = TYPE_ANNOTATION_MAP


install_messaging(Base.metadata)


# What `q` matches against. The search index is built over exactly this expression,
# spelled as PostgreSQL prints it back, so the migration check sees no drift.
SEARCH_TEXT = (
    "lower((((title::text || ' '::text) || brand::text) || ' '::text) || model::text)"
)


class ProductCondition(enum.StrEnum):
    NEW = "new"
    USED = "used"


class ReservationStatus(enum.StrEnum):
    RESERVED = "RESERVED"
    RELEASED = "RELEASED"
    COMMITTED = "COMMITTED"


class Product(TimestampMixin, Base):
    """A listed sneaker and its stock."""

    __tablename__ = "products"
    __table_args__ = (
        sa.CheckConstraint("quantity >= 0", name="quantity_not_negative"),
        sa.CheckConstraint("reserved >= 0", name="reserved_not_negative"),
        sa.CheckConstraint("reserved <= quantity", name="reserved_within_quantity"),
        sa.CheckConstraint("sold >= 0", name="sold_not_negative"),
        sa.CheckConstraint("price >= 0", name="price_not_negative"),
        # The list filters and sorts on these.
        sa.Index("ix_products_brand", "brand"),
        sa.Index("ix_products_size", "size"),
        sa.Index("ix_products_color", "color"),
        sa.Index("ix_products_condition", "condition"),
        sa.Index("ix_products_price", "price", "id"),
        sa.Index("ix_products_created_at", "created_at", "id"),
        sa.Index("ix_products_seller_id", "seller_id", "created_at"),
        # `q`: trigram GIN when pg_trgm exists, else btree on the same text (0002).
        sa.Index(
            "ix_products_search",
            sa.literal_column(SEARCH_TEXT),
            postgresql_using="gin",
            postgresql_ops={SEARCH_TEXT: "gin_trgm_ops"},
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    seller_id: Mapped[uuid.UUID]
    title: Mapped[str] = mapped_column(sa.String(200))
    brand: Mapped[str] = mapped_column(sa.String(100))
    model: Mapped[str] = mapped_column(sa.String(100))
    size: Mapped[str] = mapped_column(sa.String(20))
    color: Mapped[str] = mapped_column(sa.String(50))
    condition: Mapped[ProductCondition] = mapped_column(
        enum_by_value(ProductCondition, 8)
    )
    price: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(sa.String(3))
    quantity: Mapped[int]
    reserved: Mapped[int] = mapped_column(default=0, server_default="0")
    sold: Mapped[int] = mapped_column(default=0, server_default="0")
    description: Mapped[str] = mapped_column(sa.Text, default="", server_default="")
    archived_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    @property
    def available(self) -> int:
        """Units that can still be reserved."""
        return self.quantity - self.reserved


class Reservation(TimestampMixin, Base):
    """The stock held for one order; one per order id."""

    __tablename__ = "reservations"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    order_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    status: Mapped[ReservationStatus] = mapped_column(
        enum_by_value(ReservationStatus, 16)
    )
    items: Mapped[list[ReservationItem]] = relationship(
        back_populates="reservation",
        order_by="ReservationItem.product_id",
        cascade="all, delete-orphan",
    )


class ReservationItem(Base):
    """One product line of a reservation, with the price and title when reserved."""

    __tablename__ = "reservation_items"
    __table_args__ = (
        sa.CheckConstraint("quantity > 0", name="quantity_positive"),
        sa.Index("ix_reservation_items_product_id", "product_id"),
    )

    reservation_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("reservations.id", ondelete="CASCADE"), primary_key=True
    )
    product_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("products.id"), primary_key=True
    )
    quantity: Mapped[int]
    title: Mapped[str] = mapped_column(sa.String(200))
    unit_price: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(sa.String(3))
    reservation: Mapped[Reservation] = relationship(back_populates="items")
