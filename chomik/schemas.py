"""Marshmallow pieces every HTTP contract shares: money, lines of text, pages.

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
# What the spec says of an amount: up to ten digits, then up to two places.
MONEY_PATTERN = r"^[0-9]{1,10}(\.[0-9]{1,2})?$"
# Characters that never belong in a line a person reads: C0/C1 controls, DEL,
# surrogates, line and paragraph separators, and the format characters (Cf):
# bidirectional overrides and isolates that make a label print differently from
# what is stored, zero-width spaces and joiners that make two names look alike. That
# is the categories Cc, Cf, Zl and Zp of the Basic Multilingual Plane (a test checks
# the class against them); the format characters beyond it are allowed, as they
# include the tag characters of emoji flags. The surrogates (Cs) are refused too but
# left out of the spec's pattern: no JSON Schema engine takes them, and a lone one is
# not text.
CONTROLS = (
    r"\u0000-\u001f\u007f-\u009f\u00ad\u0600-\u0605\u061c\u06dd\u070f"
    r"\u0890-\u0891\u08e2\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064"
    r"\u2066-\u206f\ufeff\ufff9-\ufffb"
)
_HAS_CONTROL = re.compile(f"[{CONTROLS}\\ud800-\\udfff]")
# What the spec says of a Line: something besides blanks, and no control character.
LINE_PATTERN = rf"^[^{CONTROLS}]*[^\s{CONTROLS}][^{CONTROLS}]*$"


def has_control(text: str) -> bool:
    """Tell whether a text holds a control, bidi or zero-width character."""
    return _HAS_CONTROL.search(text) is not None


class Line(ma.fields.String):
    """A trimmed, non-empty line of text without control, bidi or zero-width marks."""

    default_error_messages = {
        "blank": "Must not be blank.",
        "control": "Must not contain control, bidi or zero-width characters.",
        "too_long": "At most {max} characters.",
    }

    def __init__(self, max_length: int, **kwargs: Any) -> None:
        # Documented as refused: empty, or only blanks (found by schema fuzzing).
        metadata = {
            "minLength": 1,
            "maxLength": max_length,
            "pattern": LINE_PATTERN,
            **kwargs.pop("metadata", {}),
        }
        super().__init__(metadata=metadata, **kwargs)
        self.max_length = max_length

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> str:
        raw = super()._deserialize(value, attr, data, **kwargs)
        if has_control(raw):  # at the ends too: the spec's pattern refuses them there
            raise self.make_error("control")
        text = raw.strip()
        if not text:
            raise self.make_error("blank")
        if len(text) > self.max_length:
            raise self.make_error("too_long", max=self.max_length)
        return text


class Money(ma.fields.Field[Decimal]):
    """A decimal string with at most two places ("129.90"); never a float or "-0"."""

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
        metadata = {
            "type": "string",
            "format": "decimal",
            "pattern": MONEY_PATTERN,
            "example": "129.90",
        }
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
        if amount.is_signed() and amount.is_zero():
            raise self.make_error("invalid")  # "-0": no amount is negative zero
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
