"""Problem types of the carrier mock.

Problem
├── UnauthorizedError
│   └── UnknownMerchantError        401 unknown-merchant
├── NotFoundError
│   └── ShipmentNotFoundError       404 shipment-not-found
├── ConflictError
│   └── IllegalTransitionError      409 illegal-transition
├── ValidationProblem
│   └── CountryNotServedError       422 country-not-served
└── UnavailableError
    └── CarrierUnavailableError     503 carrier-unavailable (a fault switch)
"""

from __future__ import annotations

from typing import Any

from chomik.problems import (
    ConflictError,
    NotFoundError,
    Problem,
    UnauthorizedError,
    UnavailableError,
)


class UnknownMerchantError(UnauthorizedError):
    type, title = "unknown-merchant", "Unknown merchant token"


class ShipmentNotFoundError(NotFoundError):
    type, title = "shipment-not-found", "Shipment not found"


class IllegalTransitionError(ConflictError):
    type, title = "illegal-transition", "Illegal shipment transition"


class CountryNotServedError(Problem):
    status, type, title = 422, "country-not-served", "The carrier does not go there"

    def __init__(self, country: str, **extra: Any) -> None:
        super().__init__(f"no deliveries to {country}", country=country, **extra)


class CarrierUnavailableError(UnavailableError):
    type, title = "carrier-unavailable", "The carrier is unavailable"
