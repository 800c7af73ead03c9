"""Problem types of the delivery service.

Problem
├── NotFoundError
│   └── AddressNotFoundError        404 address-not-found
└── CountryNotServedError           422 country-not-served
"""

from __future__ import annotations

from chomik.problems import NotFoundError, Problem


class AddressNotFoundError(NotFoundError):
    type, title = "address-not-found", "Address not found"


class CountryNotServedError(Problem):
    status, type, title = (
        422,
        "country-not-served",
        "The carrier does not deliver to this country",
    )
