"""Errors of the delivery service.

Problem types (HTTP answers):

    Problem
    ├── NotFoundError
    │   ├── AddressNotFoundError        404 address-not-found
    │   └── ShipmentNotFoundError       404 shipment-not-found
    ├── AddressInUseError               409 address-in-use
    └── CountryNotServedError           422 country-not-served

Faults of a message (the consumer loop retries them a few times, then
dead-letters them; none is an outage):

    BadMessageError
    ├── InvalidCallbackError            bad signature, or not a carrier callback
    ├── UnknownShipmentError            a callback about no shipment of ours
    └── UnknownAddressError             order.paid names no address of its buyer
"""

from __future__ import annotations

from chomik.problems import ConflictError, NotFoundError, Problem


class AddressNotFoundError(NotFoundError):
    type, title = "address-not-found", "Address not found"


class ShipmentNotFoundError(NotFoundError):
    type, title = "shipment-not-found", "Shipment not found"


class AddressInUseError(ConflictError):
    type, title = "address-in-use", "The address is used by an order not finished"


class CountryNotServedError(Problem):
    status, type, title = (
        422,
        "country-not-served",
        "The carrier does not deliver to this country",
    )


class BadMessageError(ValueError):
    """An event that cannot be applied as it is: retrying will not help."""


class InvalidCallbackError(BadMessageError):
    """A carrier callback whose signature fails, or whose body is not a callback."""


class UnknownShipmentError(BadMessageError):
    """A carrier callback about a shipment delivery never registered."""


class UnknownAddressError(BadMessageError):
    """A paid order whose address is not one of its buyer's."""
