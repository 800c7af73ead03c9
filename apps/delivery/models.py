"""Database models of the delivery service (database `chomik_delivery`)."""

from __future__ import annotations

import datetime as dt
import enum
import uuid

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
from chomik.signing import install_signatures


class Base(DeclarativeBase):
    metadata = new_metadata()
    type_annotation_map = TYPE_ANNOTATION_MAP


install_messaging(Base.metadata)
install_signatures(Base.metadata)


class Address(TimestampMixin, Base):
    """A buyer's delivery address.

    Deleting one only sets `deleted_at`: a paid order's shipment may still need
    the address after its buyer removed it from the list.
    """

    __tablename__ = "addresses"
    __table_args__ = (
        # The buyer's list, newest first, among the addresses not deleted.
        sa.Index(
            "ix_addresses_buyer_id",
            "buyer_id",
            "created_at",
            "id",
            postgresql_where=sa.text("deleted_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    buyer_id: Mapped[uuid.UUID]
    recipient: Mapped[str] = mapped_column(sa.String(100))
    phone: Mapped[str] = mapped_column(sa.String(16))
    country: Mapped[str] = mapped_column(sa.String(2))
    city: Mapped[str] = mapped_column(sa.String(100))
    street: Mapped[str] = mapped_column(sa.String(200))
    postal_code: Mapped[str] = mapped_column(sa.String(20))
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class ShipmentStatus(enum.StrEnum):
    """Where the carrier says the parcel is (its own statuses, in order)."""

    CREATED = "CREATED"
    IN_TRANSIT = "IN_TRANSIT"
    DELIVERED = "DELIVERED"


STATUS = enum_by_value(ShipmentStatus, 20)


class Shipment(TimestampMixin, Base):
    """The one shipment of a paid order, registered with the carrier.

    `next_check_at` is when the poller asks the carrier if no callback moved the
    shipment meanwhile (NULL once delivered); `claim_token` is the poller's lease.
    """

    __tablename__ = "shipments"
    __table_args__ = (
        sa.Index("ix_shipments_buyer_id", "buyer_id", "created_at", "id"),
        sa.Index(
            "ix_shipments_next_check_at",
            "next_check_at",
            postgresql_where=sa.text("next_check_at IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    order_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    buyer_id: Mapped[uuid.UUID]
    address_id: Mapped[uuid.UUID]
    status: Mapped[ShipmentStatus] = mapped_column(STATUS)
    carrier_shipment_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    tracking_number: Mapped[str] = mapped_column(sa.String(64))
    tracking_url: Mapped[str] = mapped_column(sa.String(500))
    next_check_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    claim_token: Mapped[uuid.UUID | None]
    events: Mapped[list[ShipmentEvent]] = relationship(
        order_by=lambda: ShipmentEvent.id, cascade="all, delete-orphan"
    )


class ShipmentEvent(Base):
    """One status a shipment reached, and when the carrier says it did."""

    __tablename__ = "shipment_events"
    __table_args__ = (sa.Index("ix_shipment_events_shipment_id", "shipment_id", "id"),)

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    shipment_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("shipments.id"))
    status: Mapped[ShipmentStatus] = mapped_column(STATUS)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class AddressUse(Base):
    """An order, not finished yet, that will ship to an address: it cannot be deleted.

    Written when orders announces a placed order (`order.placed`), removed when the
    order ends (`order.cancelled`, `order.expired`, `order.delivered`).
    """

    __tablename__ = "address_uses"

    order_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    address_id: Mapped[uuid.UUID] = mapped_column(index=True)
