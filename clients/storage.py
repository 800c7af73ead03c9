"""The typed client of the storage service: the catalog and stock reservations.

Reservations are internal calls under a service token; every one of them is
idempotent per order id on the storage side, so they are retried like GETs.
Storage's problem types map to these exceptions:

    ResponseError
    ├── NotFoundError
    │   ├── ProductNotFoundError        product-not-found
    │   └── ReservationNotFoundError    reservation-not-found
    └── ConflictError
        ├── InsufficientStockError      insufficient-stock
        ├── ReservationMismatchError    reservation-mismatch
        ├── IllegalTransitionError      illegal-transition
        └── QuantityBelowReservedError  quantity-below-reserved

A success answer that lacks a field these dataclasses need raises
`MalformedResponseError` (a `ResponseError`), like any other bad answer.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from clients._http import (
    BadRequestError,
    ClientError,
    ConflictError,
    MalformedResponseError,
    NotFoundError,
    ResponseError,
    ServiceClient,
    TransportError,
)

__all__ = [
    "BadRequestError",
    "ClientError",
    "ConflictError",
    "IllegalTransitionError",
    "InsufficientStockError",
    "MalformedResponseError",
    "NotFoundError",
    "Product",
    "ProductNotFoundError",
    "ProductPage",
    "QuantityBelowReservedError",
    "ReservationMismatchError",
    "ReservationNotFoundError",
    "Reservation",
    "ReservedItem",
    "ResponseError",
    "StockItem",
    "StorageClient",
    "TransportError",
]

IDS_PER_CALL = 50  # products asked for by id in one catalog call


class ProductNotFoundError(NotFoundError):
    """The product does not exist or is archived."""

    @property
    def product_id(self) -> str | None:
        value = self.problem.get("product_id")
        return None if value is None else str(value)


class ReservationNotFoundError(NotFoundError):
    """The order holds no reservation."""


class InsufficientStockError(ConflictError):
    """A product has fewer units available than requested; nothing was reserved."""

    @property
    def product_id(self) -> str | None:
        value = self.problem.get("product_id")
        return None if value is None else str(value)

    @property
    def available(self) -> int | None:
        value = self.problem.get("available")
        return None if value is None else int(value)


class ReservationMismatchError(ConflictError):
    """The order already holds a reservation for other items."""


class IllegalTransitionError(ConflictError):
    """The reservation cannot make this move (e.g. commit after release)."""


class QuantityBelowReservedError(ConflictError):
    """The new quantity would be below the reserved stock."""


PROBLEM_TYPES: Mapping[str, type[ResponseError]] = {
    "product-not-found": ProductNotFoundError,
    "reservation-not-found": ReservationNotFoundError,
    "insufficient-stock": InsufficientStockError,
    "reservation-mismatch": ReservationMismatchError,
    "illegal-transition": IllegalTransitionError,
    "quantity-below-reserved": QuantityBelowReservedError,
}


@dataclass(frozen=True)
class Product:
    """A catalog product."""

    id: uuid.UUID
    seller_id: uuid.UUID
    title: str
    brand: str
    model: str
    size: str
    color: str
    condition: str
    price: Decimal
    currency: str
    quantity: int
    available: int
    description: str
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Product:
        return cls(
            id=uuid.UUID(data["id"]),
            seller_id=uuid.UUID(data["seller_id"]),
            title=data["title"],
            brand=data["brand"],
            model=data["model"],
            size=data["size"],
            color=data["color"],
            condition=data["condition"],
            price=Decimal(data["price"]),
            currency=data["currency"],
            quantity=int(data["quantity"]),
            available=int(data["available"]),
            description=data.get("description") or "",
            created_at=dt.datetime.fromisoformat(data["created_at"]),
            updated_at=dt.datetime.fromisoformat(data["updated_at"]),
        )


@dataclass(frozen=True)
class ProductPage:
    """One page of the product list."""

    items: tuple[Product, ...]
    page: int
    page_size: int
    total: int

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> ProductPage:
        return cls(
            items=tuple(Product.from_json(item) for item in body["items"]),
            page=int(body["page"]),
            page_size=int(body["page_size"]),
            total=int(body["total"]),
        )


@dataclass(frozen=True)
class StockItem:
    """One line to reserve."""

    product_id: uuid.UUID
    quantity: int


@dataclass(frozen=True)
class ReservedItem:
    """One reserved line, with the title and unit price at reservation time."""

    product_id: uuid.UUID
    quantity: int
    title: str
    unit_price: Decimal
    currency: str


@dataclass(frozen=True)
class Reservation:
    """The stock held for one order: RESERVED, RELEASED or COMMITTED."""

    id: uuid.UUID
    order_id: uuid.UUID
    status: str
    items: tuple[ReservedItem, ...]
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Reservation:
        return cls(
            id=uuid.UUID(data["id"]),
            order_id=uuid.UUID(data["order_id"]),
            status=data["status"],
            items=tuple(
                ReservedItem(
                    product_id=uuid.UUID(item["product_id"]),
                    quantity=int(item["quantity"]),
                    title=item["title"],
                    unit_price=Decimal(item["unit_price"]),
                    currency=item["currency"],
                )
                for item in data["items"]
            ),
            created_at=dt.datetime.fromisoformat(data["created_at"]),
            updated_at=dt.datetime.fromisoformat(data["updated_at"]),
        )


class StorageClient(ServiceClient):
    """Calls the storage service: public catalog reads and internal reservations."""

    PROBLEM_TYPES = PROBLEM_TYPES

    # --- catalog (public) ------------------------------------------------------------

    def get_product(self, product_id: uuid.UUID) -> Product:
        """Fetch a listed product; ProductNotFoundError if unknown or archived."""
        response = self.http.request(
            "GET", f"/api/v1/products/{product_id}", authenticated=False
        )
        return self.http.decode(response, Product.from_json)

    def get_products(
        self, product_ids: Iterable[uuid.UUID]
    ) -> dict[uuid.UUID, Product]:
        """The listed products among `product_ids`, by id, in a call per 50 (a
        request line of 50 ids is 2 KB: web servers refuse one over 4 KB); an
        unknown or archived one is missing."""
        ids = [str(p) for p in dict.fromkeys(product_ids)]
        found: dict[uuid.UUID, Product] = {}
        for start in range(0, len(ids), IDS_PER_CALL):
            chunk = ids[start : start + IDS_PER_CALL]
            response = self.http.request(
                "GET", "/api/v1/products",
                params={"id": chunk, "page_size": len(chunk)}, authenticated=False,
            )  # fmt: skip
            page = self.http.decode(response, ProductPage.from_json)
            found.update((product.id, product) for product in page.items)
        return found

    def list_products(self, **filters: Any) -> ProductPage:
        """List products with the catalog's filters (q, brand, sort, page, ...)."""
        params = {k: str(v) for k, v in filters.items() if v is not None}
        response = self.http.request(
            "GET", "/api/v1/products", params=params, authenticated=False
        )
        return self.http.decode(response, ProductPage.from_json)

    # --- reservations (internal) -----------------------------------------------------

    def reserve(self, order_id: uuid.UUID, items: Iterable[StockItem]) -> Reservation:
        """Reserve every item for the order, or nothing.

        Idempotent per order id (a repeat returns the same reservation), so it is
        retried on transport failures. Raises InsufficientStockError,
        ProductNotFoundError, ReservationMismatchError, IllegalTransitionError
        (the order was released already) or BadRequestError.
        """
        body = {
            "order_id": str(order_id),
            "items": [
                {"product_id": str(i.product_id), "quantity": i.quantity} for i in items
            ],
        }
        response = self.http.request(
            "POST", "/api/v1/internal/reservations", json=body, idempotent=True
        )
        return self.http.decode(response, Reservation.from_json)

    def get_reservation(self, order_id: uuid.UUID) -> Reservation:
        """Fetch the order's reservation; ReservationNotFoundError if none."""
        response = self.http.request("GET", f"/api/v1/internal/reservations/{order_id}")
        return self.http.decode(response, Reservation.from_json)

    def release(self, order_id: uuid.UUID) -> Reservation:
        """Give the order's stock back (idempotent); IllegalTransitionError if sold."""
        return self._close(order_id, "release")

    def commit(self, order_id: uuid.UUID) -> Reservation:
        """Turn the reservation into a sale (idempotent); IllegalTransitionError if
        released."""
        return self._close(order_id, "commit")

    def _close(self, order_id: uuid.UUID, action: str) -> Reservation:
        response = self.http.request(
            "POST",
            f"/api/v1/internal/reservations/{order_id}/{action}",
            idempotent=True,
        )
        return self.http.decode(response, Reservation.from_json)
