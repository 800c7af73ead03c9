"""Database models of the carrier mock (database `chomik_carrier`)."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from chomik.db import TYPE_ANNOTATION_MAP, TimestampMixin, new_metadata
from chomik.webhooks import install_callbacks


class Base(DeclarativeBase):
    metadata = new_metadata()
    type_annotation_map = TYPE_ANNOTATION_MAP


install_callbacks(Base.metadata)


class ShipmentStatus(enum.StrEnum):
    CREATED = "CREATED"
    IN_TRANSIT = "IN_TRANSIT"
    DELIVERED = "DELIVERED"


# Each status and the one after it; DELIVERED is the end.
NEXT_STATUS = {
    ShipmentStatus.CREATED: ShipmentStatus.IN_TRANSIT,
    ShipmentStatus.IN_TRANSIT: ShipmentStatus.DELIVERED,
}


class Shipment(TimestampMixin, Base):
    """A parcel a merchant registered, on its way to an address."""

    __tablename__ = "shipments"
    __table_args__ = (
        sa.UniqueConstraint(
            "merchant", "reference", name="uq_shipments_merchant_reference"
        ),
        sa.Index("ix_shipments_next_step_at", "next_step_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    merchant: Mapped[str] = mapped_column(sa.String(100))
    reference: Mapped[str] = mapped_column(sa.String(200))
    tracking_number: Mapped[str] = mapped_column(sa.String(20), unique=True)
    address: Mapped[dict[str, Any]] = mapped_column(JSONB)
    callback_url: Mapped[str] = mapped_column(sa.String(2000))
    status: Mapped[ShipmentStatus] = mapped_column(
        sa.Enum(
            ShipmentStatus,
            native_enum=False,
            create_constraint=False,
            length=20,
            values_callable=lambda members: [m.value for m in members],
        )
    )
    # When the timer moves it on next (None: delivered, or no timer), and the
    # timer's lease on the row while it does.
    next_step_at: Mapped[dt.datetime | None]
    claim_token: Mapped[uuid.UUID | None]
