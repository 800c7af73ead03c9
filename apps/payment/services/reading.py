"""Reading payments: their owner and admins see them, nobody else."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from apps.payment.errors import PaymentNotFoundError
from apps.payment.models import Payment, PaymentStatus
from chomik.auth import Principal, user_uuid
from chomik.db import Page, paginate


@dataclass(frozen=True)
class PaymentView:
    """A payment as the API shows it."""

    id: uuid.UUID
    order_id: uuid.UUID
    status: PaymentStatus
    amount: Decimal
    currency: str
    pay_url: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


def view_of(payment: Payment) -> PaymentView:
    """The API view of a payment row."""
    return PaymentView(
        id=payment.id,
        order_id=payment.order_id,
        status=payment.status,
        amount=payment.amount,
        currency=payment.currency,
        pay_url=payment.pay_url,
        created_at=payment.created_at,
        updated_at=payment.updated_at,
    )


def _visible(user: Principal) -> list[sa.ColumnElement[bool]]:
    """The payments the caller may see; a start in flight is nobody's yet."""
    criteria = [Payment.status != PaymentStatus.STARTING]
    if not user.is_admin:
        criteria.append(Payment.buyer_id == user_uuid(user))
    return criteria


def show_payment(
    session: Session, *, user: Principal, payment_id: uuid.UUID
) -> PaymentView:
    """One payment of the caller (any, for an admin); 404 otherwise."""
    payment = session.scalar(
        sa.select(Payment).where(Payment.id == payment_id, *_visible(user))
    )
    if payment is None:
        raise PaymentNotFoundError(f"No payment {payment_id}")
    return view_of(payment)


def list_payments(
    session: Session,
    *,
    user: Principal,
    order_id: uuid.UUID | None = None,
    page: int = 1,
    page_size: int = 20,
) -> Page[PaymentView]:
    """One page of the payments the caller may see, newest first."""
    criteria = _visible(user)
    if order_id is not None:
        criteria.append(Payment.order_id == order_id)
    found = paginate(
        session,
        sa.select(Payment)
        .where(*criteria)
        .order_by(Payment.created_at.desc(), Payment.id.desc()),
        page=page,
        page_size=page_size,
    )
    views = [view_of(p) for p in found.items]
    return Page(views, found.page, found.page_size, found.total)


def pending_payments(session: Session) -> tuple[int, dt.timedelta]:
    """How many payments are PENDING, and how long the oldest has been (0: none)."""
    count, oldest = session.execute(
        sa.select(sa.func.count(), sa.func.min(Payment.created_at)).where(
            Payment.status == PaymentStatus.PENDING
        )
    ).one()
    age = dt.datetime.now(dt.UTC) - oldest if oldest is not None else dt.timedelta()
    return count, age
