"""Problem types of the orders service.

Problem
├── NotFoundError
│   └── OrderNotFoundError          404 order-not-found
├── ConflictError
│   ├── InsufficientStockError      409 insufficient-stock (product_ids)
│   ├── IdempotencyKeySpentError    409 idempotency-key-spent
│   ├── TooManyUnpaidOrdersError    409 too-many-unpaid-orders (limit)
│   ├── PlacementInProgressError    409 placement-in-progress (Retry-After)
│   └── IllegalTransitionError      409 illegal-transition (clients.orders)
├── ValidationProblem               422
│   ├── UnknownProductsError        422 unknown-products (product_ids)
│   ├── MixedCurrenciesError        422 mixed-currencies
│   ├── UnknownAddressError         422 unknown-address
│   └── TotalNotPayableError        422 total-not-payable (total, currency, bounds)
└── IdempotencyKeyReusedError       422 idempotency-key-reused (chomik.idempotency)
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from chomik.idempotency import IdempotencyKeyReusedError
from chomik.problems import ConflictError, NotFoundError, ValidationProblem
from clients.orders import IllegalTransitionError

__all__ = [
    "IdempotencyKeyReusedError",
    "IdempotencyKeySpentError",
    "IllegalTransitionError",
    "InsufficientStockError",
    "MixedCurrenciesError",
    "OrderNotFoundError",
    "PlacementInProgressError",
    "TooManyUnpaidOrdersError",
    "TotalNotPayableError",
    "UnknownAddressError",
    "UnknownProductsError",
]


class OrderNotFoundError(NotFoundError):
    type, title = "order-not-found", "Order not found"


class InsufficientStockError(ConflictError):
    type, title = "insufficient-stock", "Not enough stock"


class UnknownProductsError(ValidationProblem):
    type, title = "unknown-products", "Unknown or archived products"

    def __init__(self, errors: Mapping[str, list[str]], product_ids: list[str]) -> None:
        super().__init__(
            errors, f"Unknown or archived products: {', '.join(product_ids)}"
        )
        self.extra["product_ids"] = product_ids


class MixedCurrenciesError(ValidationProblem):
    type, title = "mixed-currencies", "Items in several currencies"


class UnknownAddressError(ValidationProblem):
    type, title = "unknown-address", "Not one of the buyer's addresses"


class TotalNotPayableError(ValidationProblem):
    """The order's total is outside what one payment can charge."""

    type, title = "total-not-payable", "The order total cannot be paid"

    def __init__(
        self, total: Decimal, currency: str, *, minimum: Decimal, maximum: Decimal
    ) -> None:
        bound = (
            f"below {minimum}, the smallest"
            if total < minimum
            else f"above {maximum}, the largest"
        )
        reason = f"The total {total} {currency} is {bound} amount a payment can be"
        super().__init__({"items": [f"{reason}."]}, reason)
        self.extra.update(
            total=str(total),
            currency=currency,
            minimum=str(minimum),
            maximum=str(maximum),
        )


class IdempotencyKeySpentError(ConflictError):
    """A placement under this key reserved stock, failed and gave the stock back."""

    type, title = "idempotency-key-spent", "Idempotency-Key spent by a failed placement"


class TooManyUnpaidOrdersError(ConflictError):
    """The buyer already has as many orders holding stock unpaid as allowed."""

    type, title = "too-many-unpaid-orders", "Too many unpaid orders"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"You have {limit} unpaid orders holding stock: pay, cancel or let one "
            "expire before placing another",
            limit=limit,
        )


class PlacementInProgressError(ConflictError):
    """Another placement of the buyer's held its turn past the wait."""

    type, title = "placement-in-progress", "Another placement is in progress"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "Another of your orders is being placed: try again shortly",
            headers={"Retry-After": str(retry_after)},
        )
