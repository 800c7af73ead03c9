"""Merchants' transactions (merchant bearer token) and paying them (the customer)."""

from __future__ import annotations

import functools
import hmac
import uuid
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from flask import g
from flask.views import MethodView
from flask_smorest import Blueprint

from chomik.auth import bearer_token
from chomik.problems import ProblemSchema
from chomik.web import db_session, settings_of
from mocks.bank import services
from mocks.bank.errors import MerchantMismatchError, UnknownMerchantError
from mocks.bank.models import Transaction
from mocks.bank.schemas import (
    PayResultSchema,
    PaySchema,
    TransactionCreateSchema,
    TransactionQueryArgsSchema,
    TransactionSchema,
)
from mocks.bank.settings import BankSettings

blp = Blueprint(
    "transactions",
    __name__,
    url_prefix="/transactions",
    description="Merchants' transactions",
)

MERCHANT: dict[str, Any] = {"security": [{"bearerAuth": []}]}
P = ParamSpec("P")
R = TypeVar("R")


def merchant_only(view: Callable[P, R]) -> Callable[P, R]:
    """Refuse a request without a merchant's token (401) before its input is parsed."""

    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        merchant_account()
        return view(*args, **kwargs)

    return wrapper


def merchant_account() -> uuid.UUID:
    """The account of the merchant whose token the request carries; else 401."""
    if "bank_merchant" in g:
        account: uuid.UUID = g.bank_merchant
        return account
    token = bearer_token() or ""
    found = None
    for known, account in settings_of(BankSettings).merchants().items():
        # Every token is compared, in constant time each.
        if hmac.compare_digest(known.encode(), token.encode()):
            found = account
    if found is None:
        raise UnknownMerchantError("A merchant's bearer token is required")
    g.bank_merchant = found
    return found


def shown(transaction: Transaction) -> dict[str, Any]:
    """A transaction with its `pay_url`."""
    base = settings_of(BankSettings).bank_public_url.rstrip("/")
    return {
        "id": transaction.id,
        "status": transaction.status,
        "amount": transaction.amount,
        "currency": transaction.currency,
        "reference": transaction.reference,
        "pay_url": f"{base}/api/v1/transactions/{transaction.id}/pay",
        "created_at": transaction.created_at,
        "updated_at": transaction.updated_at,
    }


@blp.route("")
class Transactions(MethodView):
    @merchant_only
    @blp.doc(**MERCHANT)
    @blp.arguments(TransactionCreateSchema)
    @blp.response(201, TransactionSchema)
    @blp.alt_response(200, schema=TransactionSchema, description="Same reference")
    @blp.alt_response(401, schema=ProblemSchema, description="No merchant token")
    @blp.alt_response(403, schema=ProblemSchema, description="Another merchant")
    @blp.alt_response(409, schema=ProblemSchema, description="Reference reused")
    @blp.alt_response(503, schema=ProblemSchema, description="Bank unavailable")
    def post(self, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """Create a transaction (idempotent by reference)

        The same reference again answers the existing transaction with 200; another
        amount or currency for it is a 409.
        """
        account = merchant_account()
        if body["merchant_account_id"] != account:
            raise MerchantMismatchError()
        session = db_session()
        services.refuse_if_unavailable(session, settings_of(BankSettings).faults)
        transaction, created = services.create_transaction(
            session, services.NewTransaction(**body)
        )
        return shown(transaction), 201 if created else 200

    @merchant_only
    @blp.doc(**MERCHANT)
    @blp.arguments(TransactionQueryArgsSchema, location="query")
    @blp.response(200, TransactionSchema)
    @blp.alt_response(401, schema=ProblemSchema, description="No merchant token")
    @blp.alt_response(404, schema=ProblemSchema, description="No such reference")
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Find the merchant's transaction by its reference"""
        account = merchant_account()
        return shown(
            services.find_transaction(
                db_session(), merchant_account_id=account, reference=args["reference"]
            )
        )


@blp.route("/<uuid:transaction_id>")
class TransactionById(MethodView):
    @merchant_only
    @blp.doc(**MERCHANT)
    @blp.response(200, TransactionSchema)
    @blp.alt_response(401, schema=ProblemSchema, description="No merchant token")
    @blp.alt_response(404, schema=ProblemSchema, description="No such transaction")
    def get(self, transaction_id: uuid.UUID) -> dict[str, Any]:
        """Show one of the merchant's transactions"""
        account = merchant_account()
        return shown(
            services.access_transaction(
                db_session(), merchant_account_id=account, transaction_id=transaction_id
            )
        )


@blp.route("/<uuid:transaction_id>/pay")
class TransactionPay(MethodView):
    @blp.arguments(PaySchema)
    @blp.response(200, PayResultSchema)
    @blp.alt_response(404, schema=ProblemSchema, description="No such transaction")
    @blp.alt_response(409, schema=ProblemSchema, description="Already paid or failed")
    @blp.alt_response(
        422, schema=ProblemSchema, description="The merchant's own account"
    )
    def post(self, body: dict[str, Any], transaction_id: uuid.UUID) -> Transaction:
        """Pay a transaction from a customer's account

        FAILED when the balance is short; either way the merchant gets a signed
        callback.
        """
        return services.pay_transaction(
            db_session(), transaction_id=transaction_id, account_id=body["account_id"]
        )


@blp.route("/<uuid:transaction_id>/refund")
class TransactionRefund(MethodView):
    @merchant_only
    @blp.doc(**MERCHANT)
    @blp.response(200, PayResultSchema)
    @blp.alt_response(401, schema=ProblemSchema, description="No merchant token")
    @blp.alt_response(404, schema=ProblemSchema, description="No such transaction")
    @blp.alt_response(409, schema=ProblemSchema, description="Never succeeded")
    def post(self, transaction_id: uuid.UUID) -> Transaction:
        """Refund a succeeded transaction (idempotent)"""
        account = merchant_account()
        return services.refund_transaction(
            db_session(), merchant_account_id=account, transaction_id=transaction_id
        )
