"""Problem types of the orders service.

Problem
├── NotFoundError
│   └── OrderNotFoundError          404 order-not-found
├── ConflictError
│   ├── InsufficientStockError      409 insufficient-stock (product_ids)
│   ├── IdempotencyKeySpentError    409 idempotency-key-spent
│   └── IllegalTransitionError      409 illegal-transition (clients.orders)
├── ValidationProblem               422
│   ├── UnknownProductsError        422 unknown-products (product_ids)
│   ├── MixedCurrenciesError        422 mixed-currencies
│   └── UnknownAddressError         422 unknown-address
└── IdempotencyKeyReusedError       422 idempotency-key-reused (chomik.idempotency)
"""

from __future__ import annotations

from collections.abc import Mapping

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


class IdempotencyKeySpentError(ConflictError):
    """A placement under this key reserved stock, failed and gave the stock back."""

    type, title = "idempotency-key-spent", "Idempotency-Key spent by a failed placement"
