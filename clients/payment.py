"""The typed client of the payment service, called with a user's access token.

The start of an order's payment is safe to repeat (the open payment is answered
again), so it is retried like a GET. `MIN_AMOUNT` and `MAX_AMOUNT` bound what one
payment can charge; orders refuses to place an order whose total is outside them.
The payment service's problem types map to:

    ResponseError
    ├── BadRequestError
    │   └── PaymentRefusedError         payment-refused
    ├── NotFoundError
    │   ├── PaymentNotFoundError        payment-not-found
    │   └── OrderNotFoundError          order-not-found
    ├── ConflictError
    │   └── OrderNotPayableError        order-not-payable
    └── ServerError
        └── BankUnavailableError        bank-unavailable
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from chomik.schemas import MAX_MONEY
from clients._http import (
    BadRequestError,
    Client,
    ConflictError,
    NotFoundError,
    ResponseError,
    ServerError,
)

__all__ = [
    "MAX_AMOUNT",
    "MIN_AMOUNT",
    "BankUnavailableError",
    "OrderNotFoundError",
    "OrderNotPayableError",
    "Payment",
    "PaymentClient",
    "PaymentNotFoundError",
    "PaymentPage",
    "PaymentRefusedError",
    "PaymentStart",
    "PaymentStatus",
]

# What one payment can charge: the bank takes a transaction of 0.01 up to
# 9999999999.99 and refuses any other amount (docs/api.md, "The bank").
MIN_AMOUNT = Decimal("0.01")
MAX_AMOUNT = MAX_MONEY


class PaymentStatus(enum.StrEnum):
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"


class PaymentNotFoundError(NotFoundError):
    """No such payment, or not the caller's."""


class OrderNotFoundError(NotFoundError):
    """No such order, or not the caller's."""


class OrderNotPayableError(ConflictError):
    """The order cannot be paid in its status (expired, cancelled, paid...)."""


class PaymentRefusedError(BadRequestError):
    """The bank refused to open the payment (its amount); nothing was stored."""


class BankUnavailableError(ServerError):
    """The bank did not open the payment; nothing was stored: try again later."""


PROBLEM_TYPES: Mapping[str, type[ResponseError]] = {
    "payment-not-found": PaymentNotFoundError,
    "order-not-found": OrderNotFoundError,
    "order-not-payable": OrderNotPayableError,
    "payment-refused": PaymentRefusedError,
    "bank-unavailable": BankUnavailableError,
}


@dataclass(frozen=True)
class Payment:
    """A payment as the payment service answers it."""

    id: uuid.UUID
    order_id: uuid.UUID
    status: PaymentStatus
    amount: Decimal
    currency: str
    pay_url: str | None
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Payment:
        return cls(
            id=uuid.UUID(data["id"]),
            order_id=uuid.UUID(data["order_id"]),
            status=PaymentStatus(data["status"]),
            amount=Decimal(data["amount"]),
            currency=data["currency"],
            pay_url=data["pay_url"],
            created_at=dt.datetime.fromisoformat(data["created_at"]),
            updated_at=dt.datetime.fromisoformat(data["updated_at"]),
        )


@dataclass(frozen=True)
class PaymentStart:
    """The answer of a start: the payment, and whether this call opened it."""

    payment: Payment
    created: bool


@dataclass(frozen=True)
class PaymentPage:
    """One page of payments."""

    items: tuple[Payment, ...]
    page: int
    page_size: int
    total: int


class PaymentClient(Client):
    """Calls the payment service on behalf of a user (their access token)."""

    PROBLEM_TYPES = PROBLEM_TYPES

    def start_payment(self, order_id: uuid.UUID, *, access_token: str) -> PaymentStart:
        """Open the order's payment, or get the open one; retried (it is safe)."""
        response = self.http.request(
            "POST",
            f"/api/v1/orders/{order_id}/payment",
            idempotent=True,
            headers=_user(access_token),
        )
        return PaymentStart(
            Payment.from_json(response.json()), response.status_code == 201
        )

    def get_payment(self, payment_id: uuid.UUID, *, access_token: str) -> Payment:
        """One payment of the token's user (any, for an admin)."""
        response = self.http.request(
            "GET", f"/api/v1/payments/{payment_id}", headers=_user(access_token)
        )
        return Payment.from_json(response.json())

    def list_payments(
        self,
        *,
        access_token: str,
        order_id: uuid.UUID | None = None,
        page: int = 1,
        page_size: int = 20,
    ) -> PaymentPage:
        """The payments the token's user may see, newest first."""
        params: dict[str, Any] = {"page": page, "page_size": page_size}
        if order_id is not None:
            params["order_id"] = str(order_id)
        body = self.http.request(
            "GET", "/api/v1/payments", params=params, headers=_user(access_token)
        ).json()
        return PaymentPage(
            tuple(Payment.from_json(item) for item in body["items"]),
            body["page"],
            body["page_size"],
            body["total"],
        )


def _user(access_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token}"}
