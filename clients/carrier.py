"""The typed client of the carrier (an outside system; the carrier mock in development).

Every call carries the merchant's bearer token. Registering a shipment is
idempotent by reference on the carrier's side, so it is retried like a GET. The
carrier's problem types map to these exceptions:

    ResponseError
    ├── BadRequestError
    │   └── CountryNotServedError       country-not-served
    ├── UnauthorizedError
    │   └── UnknownMerchantError        unknown-merchant
    ├── NotFoundError
    │   └── ShipmentNotFoundError       shipment-not-found
    ├── ConflictError
    │   └── IllegalTransitionError      illegal-transition
    └── ServerError
        └── CarrierUnavailableError     carrier-unavailable
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clients._http import (
    BadRequestError,
    Client,
    ClientError,
    ConflictError,
    NotFoundError,
    ResponseError,
    ServerError,
    Transport,
    TransportError,
    UnauthorizedError,
)

__all__ = [
    "BadRequestError",
    "CarrierCallback",
    "CarrierClient",
    "CarrierUnavailableError",
    "ClientError",
    "ConflictError",
    "CountryNotServedError",
    "IllegalTransitionError",
    "NotFoundError",
    "ResponseError",
    "ServerError",
    "Shipment",
    "ShipmentAddress",
    "ShipmentNotFoundError",
    "TransportError",
    "UnknownMerchantError",
]


class CountryNotServedError(BadRequestError):
    """The carrier does not deliver to the address's country."""

    @property
    def country(self) -> str | None:
        value = self.problem.get("country")
        return None if value is None else str(value)


class UnknownMerchantError(UnauthorizedError):
    """The merchant token is missing or unknown to the carrier."""


class ShipmentNotFoundError(NotFoundError):
    """No such shipment of this merchant (by id or by reference)."""


class IllegalTransitionError(ConflictError):
    """The shipment cannot move on (it is delivered)."""


class CarrierUnavailableError(ServerError):
    """The carrier refuses work for a while (503); nothing was registered."""


PROBLEM_TYPES: Mapping[str, type[ResponseError]] = {
    "country-not-served": CountryNotServedError,
    "unknown-merchant": UnknownMerchantError,
    "shipment-not-found": ShipmentNotFoundError,
    "illegal-transition": IllegalTransitionError,
    "carrier-unavailable": CarrierUnavailableError,
}


@dataclass(frozen=True)
class ShipmentAddress:
    """Where a parcel goes."""

    recipient: str
    phone: str
    country: str
    city: str
    street: str
    postal_code: str

    def to_json(self) -> dict[str, str]:
        return {
            "recipient": self.recipient,
            "phone": self.phone,
            "country": self.country,
            "city": self.city,
            "street": self.street,
            "postal_code": self.postal_code,
        }


@dataclass(frozen=True)
class Shipment:
    """A shipment at the carrier."""

    id: uuid.UUID
    reference: str
    status: str  # CREATED | IN_TRANSIT | DELIVERED
    tracking_number: str
    tracking_url: str
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Shipment:
        return cls(
            id=uuid.UUID(data["id"]),
            reference=data["reference"],
            status=data["status"],
            tracking_number=data["tracking_number"],
            tracking_url=data["tracking_url"],
            created_at=dt.datetime.fromisoformat(data["created_at"]),
            updated_at=dt.datetime.fromisoformat(data["updated_at"]),
        )


@dataclass(frozen=True)
class CarrierCallback:
    """The body of a carrier callback (verify its signature before trusting it)."""

    event_id: uuid.UUID
    shipment_id: uuid.UUID
    reference: str
    status: str  # IN_TRANSIT | DELIVERED
    occurred_at: dt.datetime

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CarrierCallback:
        """Parse a callback body; `KeyError`/`ValueError` when it is not one."""
        return cls(
            event_id=uuid.UUID(data["event_id"]),
            shipment_id=uuid.UUID(data["shipment_id"]),
            reference=str(data["reference"]),
            status=str(data["status"]),
            occurred_at=dt.datetime.fromisoformat(data["occurred_at"]),
        )


class CarrierClient(Client):
    """Calls the carrier as one merchant (its token)."""

    PROBLEM_TYPES = PROBLEM_TYPES

    def __init__(
        self,
        base_url: str,
        *,
        merchant_token: str,
        timeout: float = 5.0,
        retries: int = 2,
        transport: Transport | None = None,
    ) -> None:
        super().__init__(
            base_url,
            token=lambda: merchant_token,
            timeout=timeout,
            retries=retries,
            transport=transport,
        )

    def create_shipment(self, *, reference: str, address: ShipmentAddress) -> Shipment:
        """Register a shipment, or get the one this reference already names."""
        body = {"reference": reference, "address": address.to_json()}
        response = self.http.request(
            "POST", "/api/v1/shipments", json=body, idempotent=True
        )
        return self.http.decode(response, Shipment.from_json)

    def find_shipment(self, reference: str) -> Shipment:
        """The shipment with this reference; `ShipmentNotFoundError` if none."""
        response = self.http.request(
            "GET", "/api/v1/shipments", params={"reference": reference}
        )
        return self.http.decode(response, Shipment.from_json)

    def get_shipment(self, shipment_id: uuid.UUID) -> Shipment:
        """One of this merchant's shipments."""
        response = self.http.request("GET", f"/api/v1/shipments/{shipment_id}")
        return self.http.decode(response, Shipment.from_json)

    def advance(self, shipment_id: uuid.UUID) -> Shipment:
        """Move a shipment one status on now (the carrier mock, outside production)."""
        response = self.http.request(
            "POST", f"/api/v1/shipments/{shipment_id}/advance", authenticated=False
        )
        return self.http.decode(response, Shipment.from_json)
