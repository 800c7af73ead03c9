"""The typed HTTP client of the orders service.

Errors (the orders service's problem types):

    ResponseError
    ├── BadRequestError
    │   └── IdempotencyKeyReusedError   idempotency-key-reused
    ├── NotFoundError
    │   └── OrderNotFoundError          order-not-found
    └── ConflictError
        ├── OrderConflictError          illegal-transition
        ├── InsufficientStockError      insufficient-stock
        └── IdempotencyKeySpentError    idempotency-key-spent
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
    ConflictError,
    NotFoundError,
    ResponseError,
    ServiceClient,
)
from clients.orders.states import OrderStatus


class OrderNotFoundError(NotFoundError):
    """No such order, or not the caller's."""


class OrderConflictError(ConflictError):
    """The order cannot make the requested move (e.g. cancel after payment)."""


class InsufficientStockError(ConflictError):
    """Some products lack stock; nothing was reserved."""

    @property
    def product_ids(self) -> tuple[str, ...]:
        return tuple(str(p) for p in self.problem.get("product_ids") or ())


class IdempotencyKeyReusedError(BadRequestError):
    """The Idempotency-Key was used before with another request body."""


class IdempotencyKeySpentError(ConflictError):
    """A placement under the key failed after reserving; retry with a new key."""


PROBLEM_TYPES: Mapping[str, type[ResponseError]] = {
    "order-not-found": OrderNotFoundError,
    "illegal-transition": OrderConflictError,
    "insufficient-stock": InsufficientStockError,
    "idempotency-key-reused": IdempotencyKeyReusedError,
    "idempotency-key-spent": IdempotencyKeySpentError,
}


@dataclass(frozen=True)
class OrderLine:
    """One product line of an order, priced when it was placed."""

    product_id: uuid.UUID
    title: str
    quantity: int
    unit_price: Decimal


@dataclass(frozen=True)
class Order:
    """An order as the orders service answers it."""

    id: uuid.UUID
    buyer_id: uuid.UUID
    status: OrderStatus
    items: tuple[OrderLine, ...]
    total: Decimal
    currency: str
    address_id: uuid.UUID
    expires_at: dt.datetime
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Order:
        return cls(
            id=uuid.UUID(data["id"]),
            buyer_id=uuid.UUID(data["buyer_id"]),
            status=OrderStatus(data["status"]),
            items=tuple(
                OrderLine(
                    product_id=uuid.UUID(item["product_id"]),
                    title=item["title"],
                    quantity=int(item["quantity"]),
                    unit_price=Decimal(item["unit_price"]),
                )
                for item in data["items"]
            ),
            total=Decimal(data["total"]),
            currency=data["currency"],
            address_id=uuid.UUID(data["address_id"]),
            expires_at=dt.datetime.fromisoformat(data["expires_at"]),
            created_at=dt.datetime.fromisoformat(data["created_at"]),
            updated_at=dt.datetime.fromisoformat(data["updated_at"]),
        )


@dataclass(frozen=True)
class Placement:
    """A placed order, and whether this call created it (False: a replay)."""

    order: Order
    created: bool


@dataclass(frozen=True)
class OrderPage:
    """One page of an order list."""

    items: tuple[Order, ...]
    page: int
    page_size: int
    total: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OrderPage:
        return cls(
            items=tuple(Order.from_json(item) for item in data["items"]),
            page=int(data["page"]),
            page_size=int(data["page_size"]),
            total=int(data["total"]),
        )


class OrdersClient(ServiceClient):
    """Calls the orders service: internal reads by service token, user calls by
    the user's access token."""

    PROBLEM_TYPES = PROBLEM_TYPES

    def get_order(self, order_id: uuid.UUID) -> Order:
        """Fetch any order (internal, service token); OrderNotFoundError if none."""
        response = self.http.request("GET", f"/api/v1/internal/orders/{order_id}")
        return self.http.decode(response, Order.from_json)

    def place_order(
        self,
        *,
        access_token: str,
        idempotency_key: str,
        items: Iterable[tuple[uuid.UUID, int]],
        address_id: uuid.UUID,
    ) -> Placement:
        """Place an order for the token's buyer; retried, as the key makes it safe.

        Raises InsufficientStockError, IdempotencyKeyReusedError or BadRequestError.
        """
        body = {
            "items": [{"product_id": str(p), "quantity": n} for p, n in items],
            "address_id": str(address_id),
        }
        response = self.http.request(
            "POST",
            "/api/v1/orders",
            json=body,
            idempotent=True,
            headers=_user(access_token, {"Idempotency-Key": idempotency_key}),
        )
        order = self.http.decode(response, Order.from_json)
        return Placement(order, created=response.status_code == 201)

    def list_orders(
        self,
        *,
        access_token: str,
        status: OrderStatus | None = None,
        page: int = 1,
        page_size: int = 20,
    ) -> OrderPage:
        """List the orders the token's user may see, newest first."""
        params: dict[str, Any] = {"page": page, "page_size": page_size}
        if status is not None:
            params["status"] = status.value
        response = self.http.request(
            "GET", "/api/v1/orders", params=params, headers=_user(access_token)
        )
        return self.http.decode(response, OrderPage.from_json)

    def cancel_order(self, *, access_token: str, order_id: uuid.UUID) -> Order:
        """Cancel an unpaid order; OrderConflictError once it is paid or paying."""
        response = self.http.request(
            "POST",
            f"/api/v1/orders/{order_id}/cancel",
            idempotent=True,
            headers=_user(access_token),
        )
        return self.http.decode(response, Order.from_json)


def _user(access_token: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token}", **dict(extra or {})}
