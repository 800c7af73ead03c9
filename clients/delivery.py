"""The typed client of the delivery service: the address check orders makes.

The check is an internal call under a service token. Delivery's problem types map
to these exceptions:

    ResponseError
    └── NotFoundError
        └── AddressNotFoundError        address-not-found
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clients._http import (
    BadRequestError,
    ClientError,
    NotFoundError,
    ResponseError,
    ServiceClient,
    TransportError,
)

__all__ = [
    "Address",
    "AddressNotFoundError",
    "BadRequestError",
    "ClientError",
    "DeliveryClient",
    "NotFoundError",
    "ResponseError",
    "TransportError",
]


class AddressNotFoundError(NotFoundError):
    """The address does not exist, is deleted, or is another buyer's."""


PROBLEM_TYPES: Mapping[str, type[ResponseError]] = {
    "address-not-found": AddressNotFoundError,
}


@dataclass(frozen=True)
class Address:
    """A buyer's delivery address."""

    id: uuid.UUID
    buyer_id: uuid.UUID
    recipient: str
    phone: str
    country: str
    city: str
    street: str
    postal_code: str
    created_at: dt.datetime

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Address:
        return cls(
            id=uuid.UUID(data["id"]),
            buyer_id=uuid.UUID(data["buyer_id"]),
            recipient=data["recipient"],
            phone=data["phone"],
            country=data["country"],
            city=data["city"],
            street=data["street"],
            postal_code=data["postal_code"],
            created_at=dt.datetime.fromisoformat(data["created_at"]),
        )


class DeliveryClient(ServiceClient):
    """Calls the delivery service's internal endpoints."""

    PROBLEM_TYPES = PROBLEM_TYPES

    def get_buyer_address(
        self, buyer_id: uuid.UUID, address_id: uuid.UUID
    ) -> Address | None:
        """The buyer's address, or None if it is unknown, deleted or not theirs.

        Any other failure raises: a 404 without delivery's `address-not-found`
        type (a wrong base URL, say) is a NotFoundError, not a missing address.
        """
        try:
            response = self.http.request(
                "GET",
                f"/api/v1/internal/addresses/{address_id}",
                params={"buyer_id": str(buyer_id)},
            )
        except AddressNotFoundError:
            return None
        return self.http.decode(response, Address.from_json)

    def address_belongs_to(self, buyer_id: uuid.UUID, address_id: uuid.UUID) -> bool:
        """Tell whether the address exists, is not deleted and is the buyer's."""
        return self.get_buyer_address(buyer_id, address_id) is not None
