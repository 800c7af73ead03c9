"""Problem types of the payment service.

Problem
├── NotFoundError
│   ├── PaymentNotFoundError        404 payment-not-found
│   └── OrderNotFoundError          404 order-not-found (unknown or not yours)
├── ConflictError
│   ├── OrderNotPayableError        409 order-not-payable (status)
│   └── IllegalTransitionError      409 illegal-transition (apps.payment.states)
├── PaymentRefusedError             422 payment-refused (amount, currency)
└── UnavailableError
    └── BankUnavailableError        503 bank-unavailable (Retry-After)
"""

from __future__ import annotations

from decimal import Decimal

from apps.payment.states import IllegalTransitionError
from chomik.problems import ConflictError, NotFoundError, Problem, UnavailableError

__all__ = [
    "BankUnavailableError",
    "IllegalTransitionError",
    "OrderNotFoundError",
    "OrderNotPayableError",
    "PaymentNotFoundError",
    "PaymentRefusedError",
]

RETRY_AFTER = "5"


class PaymentNotFoundError(NotFoundError):
    type, title = "payment-not-found", "Payment not found"


class OrderNotFoundError(NotFoundError):
    type, title = "order-not-found", "Order not found"


class OrderNotPayableError(ConflictError):
    type, title = "order-not-payable", "The order cannot be paid now"


class PaymentRefusedError(Problem):
    """The bank refused to open the payment (an amount it does not take); nothing
    was stored, and the same start is refused again."""

    status, type, title = 422, "payment-refused", "The bank refused the payment"

    def __init__(self, detail: str, *, amount: Decimal, currency: str) -> None:
        super().__init__(detail, amount=str(amount), currency=currency)


class BankUnavailableError(UnavailableError):
    """The bank did not answer or refused work; nothing was stored."""

    type, title = "bank-unavailable", "The bank is unavailable"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, headers={"Retry-After": RETRY_AFTER})
