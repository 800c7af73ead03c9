"""Database models of the bank mock (database `chomik_bank`).

Test money only: accounts hold balances that payments move to a merchant's account.
The CHECK constraints keep balances and amounts sane whatever the code does.
"""

from __future__ import annotations

import enum
import uuid
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from chomik.db import TYPE_ANNOTATION_MAP, TimestampMixin, new_metadata
from chomik.webhooks import install_callbacks


class Base(DeclarativeBase):
    metadata = new_metadata()
    type_annotation_map = TYPE_ANNOTATION_MAP


install_callbacks(Base.metadata)


class TransactionStatus(enum.StrEnum):
    CREATED = "CREATED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    REFUNDED = "REFUNDED"


class Account(TimestampMixin, Base):
    """An account with a test balance (a customer's or a merchant's)."""

    __tablename__ = "accounts"
    __table_args__ = (sa.CheckConstraint("balance >= 0", name="balance_not_negative"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    owner: Mapped[str] = mapped_column(sa.String(200))
    balance: Mapped[Decimal]


class Transaction(TimestampMixin, Base):
    """A merchant's request for money, paid (or not) by a customer's account."""

    __tablename__ = "transactions"
    __table_args__ = (
        sa.UniqueConstraint(
            "merchant_account_id",
            "reference",
            name="uq_transactions_merchant_reference",
        ),
        sa.CheckConstraint("amount > 0", name="amount_positive"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    merchant_account_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("accounts.id"))
    reference: Mapped[str] = mapped_column(sa.String(200))
    amount: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(sa.String(3))
    callback_url: Mapped[str] = mapped_column(sa.String(2000))
    status: Mapped[TransactionStatus] = mapped_column(
        sa.Enum(
            TransactionStatus,
            native_enum=False,
            create_constraint=False,
            length=20,
            values_callable=lambda members: [m.value for m in members],
        )
    )
    payer_account_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("accounts.id")
    )
