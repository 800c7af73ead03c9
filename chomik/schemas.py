"""Marshmallow pieces every HTTP contract shares: money, and pages of a list.

A list answers `{items, page, page_size, total}` (flask-smorest's own `@paginate`
does not produce this shape): `PageArgsSchema` reads `page` and `page_size`, a
`PageSchema` subclass declaring `items` describes the answer, and
`chomik.db.paginate` fetches the page.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

import marshmallow as ma
from marshmallow import validate

# numeric(12, 2), the kit's Money column
MAX_MONEY = Decimal("9999999999.99")
MAX_PAGE = 1_000_000
MAX_PAGE_SIZE = 100

_DECIMAL_TEXT = re.compile(r"-?\d{1,12}(\.\d{1,12})?", re.ASCII)
_CENT = Decimal("0.01")


class Money(ma.fields.Field[Decimal]):
    """A decimal string with at most two places ("129.90"); never a float."""

    default_error_messages = {
        "invalid": 'Not a decimal string such as "129.90".',
        "places": "At most two decimal places.",
        "range": "Must be between {minimum} and {maximum}.",
    }

    def __init__(
        self,
        *,
        minimum: Decimal = Decimal(0),
        maximum: Decimal = MAX_MONEY,
        **kwargs: Any,
    ) -> None:
        metadata = {"type": "string", "format": "decimal", "example": "129.90"}
        super().__init__(metadata={**metadata, **kwargs.pop("metadata", {})}, **kwargs)
        self.minimum = minimum
        self.maximum = maximum

    def _serialize(
        self, value: Decimal | None, attr: str | None, obj: Any, **kwargs: Any
    ) -> str | None:
        return None if value is None else str(value.quantize(_CENT))

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self.make_error("invalid")
        # A plain decimal string only: no exponent, no spaces, ASCII digits.
        if isinstance(value, str) and not _DECIMAL_TEXT.fullmatch(value):
            raise self.make_error("invalid")
        try:
            amount = Decimal(str(value).strip())
        except InvalidOperation as exc:
            raise self.make_error("invalid") from exc
        if not amount.is_finite():
            raise self.make_error("invalid")
        exponent = amount.as_tuple().exponent
        if isinstance(exponent, int) and exponent < -2:
            raise self.make_error("places")
        if not self.minimum <= amount <= self.maximum:
            raise self.make_error("range", minimum=self.minimum, maximum=self.maximum)
        return amount


class PageArgsSchema(ma.Schema):
    """`page` (from 1) and `page_size` of a list; extend it with the list's filters."""

    page = ma.fields.Integer(
        load_default=1, validate=validate.Range(min=1, max=MAX_PAGE)
    )
    page_size = ma.fields.Integer(
        load_default=20, validate=validate.Range(min=1, max=MAX_PAGE_SIZE)
    )


class PageSchema(ma.Schema):
    """A page of a list; a subclass declares `items` with its item schema."""

    items = ma.fields.List(ma.fields.Dict())
    page = ma.fields.Integer()
    page_size = ma.fields.Integer()
    total = ma.fields.Integer()
