"""Database models of the payment service (database `chomik_payment`)."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from chomik.db import TYPE_ANNOTATION_MAP, UTCDateTime, enum_by_value, new_metadata
from chomik.messaging.outbox import install_messaging
from chomik.signing import install_signatures


class Base(DeclarativeBase):
    metadata = new_metadata()
    type_annotation_map = TYPE_ANNOTATION_MAP


install_messaging(Base.metadata)
install_signatures(Base.metadata)


class PaymentStatus(enum.StrEnum):
    # Claimed by a start whose bank call or two-phase commit has not finished:
    # never shown, taken over by the next start for the same order.
    STARTING = "STARTING"
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"


# At most one of these per order (a partial unique index).
OPEN_STATUSES = (PaymentStatus.STARTING, PaymentStatus.PENDING)
_OPEN_SQL = "status IN ('STARTING', 'PENDING')"


class Payment(Base):
    """One attempt to pay an order at the bank; its id is the bank's reference."""

    __tablename__ = "payments"
    __mapper_args__ = {"eager_defaults": True}

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    order_id: Mapped[uuid.UUID]
    buyer_id: Mapped[uuid.UUID]
    status: Mapped[PaymentStatus] = mapped_column(enum_by_value(PaymentStatus, 20))
    amount: Mapped[Decimal] = mapped_column(sa.Numeric(18, 2, asdecimal=True))
    currency: Mapped[str] = mapped_column(sa.String(3))
    bank_transaction_id: Mapped[uuid.UUID | None]
    pay_url: Mapped[str | None] = mapped_column(sa.String(500))
    # The poller's lease: due while the payment is PENDING.
    next_check_at: Mapped[dt.datetime | None]
    claim_token: Mapped[uuid.UUID | None]
    # A success that came after the payment expired was refunded at the bank.
    refunded_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(
        UTCDateTime(), server_default=sa.func.now()
    )
    updated_at: Mapped[dt.datetime] = mapped_column(
        UTCDateTime(), server_default=sa.func.now(), onupdate=sa.func.now()
    )

    __table_args__ = (
        sa.CheckConstraint("amount >= 0", name="amount_not_negative"),
        sa.Index(
            "uq_payments_open_order_id",
            "order_id",
            unique=True,
            postgresql_where=sa.text(_OPEN_SQL),
        ),
        sa.Index("ix_payments_order_id", "order_id", "created_at"),
        sa.Index(
            "ix_payments_next_check_at",
            "next_check_at",
            postgresql_where=sa.text("next_check_at IS NOT NULL"),
        ),
    )
