"""Problem types of the storage service.

Problem
├── NotFoundError
│   ├── ProductNotFoundError        404 product-not-found
│   └── ReservationNotFoundError    404 reservation-not-found
├── ConflictError
│   ├── InsufficientStockError      409 insufficient-stock
│   ├── QuantityBelowReservedError  409 quantity-below-reserved
│   ├── ReservationMismatchError    409 reservation-mismatch
│   └── IllegalTransitionError      409 illegal-transition
└── ValidationProblem               422 validation-error (duplicate product lines)
"""

from __future__ import annotations

from chomik.problems import ConflictError, NotFoundError


class ProductNotFoundError(NotFoundError):
    type, title = "product-not-found", "Product not found"


class ReservationNotFoundError(NotFoundError):
    type, title = "reservation-not-found", "Reservation not found"


class InsufficientStockError(ConflictError):
    type, title = "insufficient-stock", "Not enough stock"


class QuantityBelowReservedError(ConflictError):
    type, title = "quantity-below-reserved", "Quantity below reserved stock"


class ReservationMismatchError(ConflictError):
    type, title = "reservation-mismatch", "The order already holds another reservation"


class IllegalTransitionError(ConflictError):
    type, title = "illegal-transition", "Illegal reservation transition"
