"""Database models of the delivery service (database `chomik_delivery`)."""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from chomik.db import TYPE_ANNOTATION_MAP, TimestampMixin, UTCDateTime, new_metadata
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
