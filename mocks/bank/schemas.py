"""Marshmallow schemas: the HTTP contract of the bank mock."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

import marshmallow as ma
from marshmallow import validate

from mocks.bank.models import TransactionStatus

MAX_AMOUNT = Decimal("9999999999.99")  # numeric(12, 2)
_DECIMAL_TEXT = re.compile(r"\d{1,10}(\.\d{1,2})?", re.ASCII)


class Money(ma.fields.Field[Decimal]):
    """A decimal string with at most two places ("129.90"); never a float."""

    default_error_messages = {
        "invalid": 'Not a decimal string such as "129.90" (at most two places).',
    }

    def __init__(self, **kwargs: Any) -> None:
        metadata = {"type": "string", "format": "decimal", "example": "129.90"}
        super().__init__(metadata=metadata, **kwargs)

    def _serialize(
        self, value: Decimal | None, attr: str | None, obj: Any, **kwargs: Any
    ) -> str | None:
        return None if value is None else str(value.quantize(Decimal("0.01")))

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> Decimal:
        if not isinstance(value, str) or not _DECIMAL_TEXT.fullmatch(value):
            raise self.make_error("invalid")
        try:
            return Decimal(value)
        except InvalidOperation as exc:  # pragma: no cover - the pattern rules it out
            raise self.make_error("invalid") from exc


class AccountCreateSchema(ma.Schema):
    """The body of POST /accounts."""

    owner = ma.fields.String(required=True, validate=validate.Length(min=1, max=200))
    balance = Money(required=True)


class AccountSchema(ma.Schema):
    """An account and its balance."""

    id = ma.fields.UUID(dump_only=True)
    owner = ma.fields.String()
    balance = Money()


class TransactionCreateSchema(ma.Schema):
    """The body of POST /transactions."""

    amount = Money(required=True, validate=validate.Range(min=Decimal("0.01")))
    currency = ma.fields.String(required=True, validate=validate.Regexp(r"^[A-Z]{3}$"))
    merchant_account_id = ma.fields.UUID(required=True)
    callback_url = ma.fields.Url(
        required=True,
        require_tld=False,
        schemes={"http", "https"},
        validate=validate.Length(max=2000),
    )
    reference = ma.fields.String(
        required=True, validate=validate.Length(min=1, max=200)
    )


class TransactionSchema(ma.Schema):
    """A transaction as its merchant sees it."""

    id = ma.fields.UUID()
    status = ma.fields.Enum(TransactionStatus, by_value=True)
    amount = Money()
    currency = ma.fields.String()
    reference = ma.fields.String()
    pay_url = ma.fields.String()
    created_at = ma.fields.AwareDateTime()
    updated_at = ma.fields.AwareDateTime()


class TransactionQueryArgsSchema(ma.Schema):
    """GET /transactions?reference=..."""

    reference = ma.fields.String(
        required=True, validate=validate.Length(min=1, max=200)
    )


class PaySchema(ma.Schema):
    """The body of POST /transactions/{id}/pay: the customer's account."""

    account_id = ma.fields.UUID(required=True)


class PayResultSchema(ma.Schema):
    """What paying answers."""

    id = ma.fields.UUID()
    status = ma.fields.Enum(TransactionStatus, by_value=True)
