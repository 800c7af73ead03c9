"""Marshmallow schemas: the HTTP contract of addresses."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import marshmallow as ma

from apps.delivery.countries import ISO_COUNTRIES
from chomik.schemas import PageSchema

# E.164: "+", then 8 to 15 digits, the first (the country code's) never 0.
PHONE = re.compile(r"\+[1-9][0-9]{7,14}", re.ASCII)
# Characters that never belong in an address line: C0/C1 controls, DEL, line and
# paragraph separators, surrogates, and the bidirectional overrides that can make
# a label print differently from what is stored.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_CONTROL_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})


def _has_control(text: str) -> bool:
    return any(
        char in _BIDI_CONTROLS or unicodedata.category(char) in _CONTROL_CATEGORIES
        for char in text
    )


class Line(ma.fields.String):
    """A trimmed, non-empty line of text without control characters."""

    default_error_messages = {
        "blank": "Must not be blank.",
        "control": "Must not contain control characters.",
        "too_long": "At most {max} characters.",
    }

    def __init__(self, max_length: int, **kwargs: Any) -> None:
        metadata = {"maxLength": max_length, **kwargs.pop("metadata", {})}
        super().__init__(required=True, metadata=metadata, **kwargs)
        self.max_length = max_length

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> str:
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        if not text:
            raise self.make_error("blank")
        if _has_control(text):
            raise self.make_error("control")
        if len(text) > self.max_length:
            raise self.make_error("too_long", max=self.max_length)
        return text


class Phone(Line):
    """A phone number in E.164 form, such as +79161234567."""

    default_error_messages = {"phone": "Must be E.164: + and 8 to 15 digits."}

    def __init__(self) -> None:
        super().__init__(16, metadata={"example": "+79161234567"})

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if not PHONE.fullmatch(text):
            raise self.make_error("phone")
        return text


class Country(Line):
    """An ISO 3166-1 alpha-2 country code; lower case is accepted and raised."""

    default_error_messages = {"country": "Must be an ISO 3166-1 alpha-2 code."}

    def __init__(self) -> None:
        super().__init__(2, metadata={"example": "RU"})

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> str:
        text = super()._deserialize(value, attr, data, **kwargs).upper()
        if text not in ISO_COUNTRIES:
            raise self.make_error("country")
        return text


class AddressCreateSchema(ma.Schema):
    """The body of POST /addresses."""

    recipient = Line(100)
    phone = Phone()
    country = Country()
    city = Line(100)
    street = Line(200)
    postal_code = Line(20)


class AddressSchema(ma.Schema):
    """An address as answered to its buyer."""

    id = ma.fields.UUID()
    recipient = ma.fields.String()
    phone = ma.fields.String()
    country = ma.fields.String()
    city = ma.fields.String()
    street = ma.fields.String()
    postal_code = ma.fields.String()
    created_at = ma.fields.AwareDateTime()


class BuyerAddressSchema(AddressSchema):
    """An address as answered to the orders service: with its buyer."""

    buyer_id = ma.fields.UUID()


class AddressPageSchema(PageSchema):
    """A page of addresses: {items, page, page_size, total}."""

    items = ma.fields.List(ma.fields.Nested(AddressSchema))


class OwnerArgsSchema(ma.Schema):
    """The query of the internal ownership check."""

    buyer_id = ma.fields.UUID(required=True)
