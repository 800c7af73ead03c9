"""Marshmallow schemas: the HTTP contract of the bank mock."""

from __future__ import annotations

from decimal import Decimal

import marshmallow as ma
from marshmallow import validate

from chomik.schemas import Money
from mocks.bank.models import TransactionStatus


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

    amount = Money(required=True, minimum=Decimal("0.01"))
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
