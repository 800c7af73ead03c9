"""The typed client of the bank (an outside system; the bank mock in development).

Merchant calls carry the merchant's bearer token. Creating a transaction is
idempotent by reference on the bank's side, so it is retried like a GET; paying is
the customer's call and is never retried. The bank's problem types map to these
exceptions:

    ResponseError
    ├── UnauthorizedError
    │   └── UnknownMerchantError        unknown-merchant
    ├── ForbiddenError
    │   └── MerchantMismatchError       merchant-mismatch
    ├── NotFoundError
    │   ├── AccountNotFoundError        account-not-found
    │   └── TransactionNotFoundError    transaction-not-found
    ├── ConflictError
    │   ├── ReferenceConflictError      reference-conflict
    │   └── IllegalTransitionError      illegal-transition
    └── ServerError
        └── BankUnavailableError        bank-unavailable
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from clients._http import (
    BadRequestError,
    Client,
    ClientError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    ResponseError,
    ServerError,
    Transport,
    TransportError,
    UnauthorizedError,
)

__all__ = [
    "Account",
    "AccountNotFoundError",
    "BadRequestError",
    "BankCallback",
    "BankClient",
    "BankUnavailableError",
    "ClientError",
    "ConflictError",
    "IllegalTransitionError",
    "MerchantMismatchError",
    "NotFoundError",
    "ReferenceConflictError",
    "ResponseError",
    "ServerError",
    "StatusChange",
    "Transaction",
    "TransactionNotFoundError",
    "TransportError",
    "UnknownMerchantError",
]


class UnknownMerchantError(UnauthorizedError):
    """The merchant token is missing or unknown to the bank."""


class MerchantMismatchError(ForbiddenError):
    """The token belongs to another merchant account than the one named."""


class AccountNotFoundError(NotFoundError):
    """No such bank account."""


class TransactionNotFoundError(NotFoundError):
    """No such transaction of this merchant (by id or by reference)."""


class ReferenceConflictError(ConflictError):
    """The reference already names a transaction with another amount or currency."""


class IllegalTransitionError(ConflictError):
    """The transaction cannot make this move (pay twice, refund an unpaid one)."""


class BankUnavailableError(ServerError):
    """The bank refuses work for a while (503); nothing was created."""


PROBLEM_TYPES: Mapping[str, type[ResponseError]] = {
    "unknown-merchant": UnknownMerchantError,
    "merchant-mismatch": MerchantMismatchError,
    "account-not-found": AccountNotFoundError,
    "transaction-not-found": TransactionNotFoundError,
    "reference-conflict": ReferenceConflictError,
    "illegal-transition": IllegalTransitionError,
    "bank-unavailable": BankUnavailableError,
}


@dataclass(frozen=True)
class Transaction:
    """A merchant's transaction at the bank."""

    id: uuid.UUID
    status: str  # CREATED | SUCCEEDED | FAILED | REFUNDED
    amount: Decimal
    currency: str
    reference: str
    pay_url: str
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Transaction:
        return cls(
            id=uuid.UUID(data["id"]),
            status=data["status"],
            amount=Decimal(data["amount"]),
            currency=data["currency"],
            reference=data["reference"],
            pay_url=data["pay_url"],
            created_at=dt.datetime.fromisoformat(data["created_at"]),
            updated_at=dt.datetime.fromisoformat(data["updated_at"]),
        )


@dataclass(frozen=True)
class StatusChange:
    """What paying or refunding answers: the transaction's new status."""

    id: uuid.UUID
    status: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StatusChange:
        return cls(id=uuid.UUID(data["id"]), status=data["status"])


@dataclass(frozen=True)
class Account:
    """A bank account with its balance."""

    id: uuid.UUID
    owner: str
    balance: Decimal

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Account:
        return cls(
            id=uuid.UUID(data["id"]),
            owner=data["owner"],
            balance=Decimal(data["balance"]),
        )


@dataclass(frozen=True)
class BankCallback:
    """The body of a bank callback (verify its signature before trusting it)."""

    event_id: uuid.UUID
    transaction_id: uuid.UUID
    reference: str
    status: str  # SUCCEEDED | FAILED | REFUNDED
    amount: Decimal
    currency: str
    occurred_at: dt.datetime

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BankCallback:
        """Parse a callback body; `KeyError`/`ValueError` when it is not one."""
        return cls(
            event_id=uuid.UUID(data["event_id"]),
            transaction_id=uuid.UUID(data["transaction_id"]),
            reference=str(data["reference"]),
            status=str(data["status"]),
            amount=Decimal(str(data["amount"])),
            currency=str(data["currency"]),
            occurred_at=dt.datetime.fromisoformat(data["occurred_at"]),
        )


class BankClient(Client):
    """Calls the bank as one merchant (its token and its account)."""

    PROBLEM_TYPES = PROBLEM_TYPES

    def __init__(
        self,
        base_url: str,
        *,
        merchant_token: str,
        merchant_account_id: uuid.UUID,
        timeout: float = 5.0,
        retries: int = 2,
        transport: Transport | None = None,
    ) -> None:
        self.merchant_account_id = merchant_account_id
        super().__init__(
            base_url,
            token=lambda: merchant_token,
            timeout=timeout,
            retries=retries,
            transport=transport,
        )

    def create_transaction(
        self, *, reference: str, amount: Decimal, currency: str, callback_url: str
    ) -> Transaction:
        """Create a transaction, or get the one this reference already names."""
        body = {
            "reference": reference,
            "amount": str(amount.quantize(Decimal("0.01"))),
            "currency": currency,
            "callback_url": callback_url,
            "merchant_account_id": str(self.merchant_account_id),
        }
        response = self.http.request(
            "POST", "/api/v1/transactions", json=body, idempotent=True
        )
        return self.http.decode(response, Transaction.from_json)

    def find_transaction(self, reference: str) -> Transaction:
        """The transaction with this reference; `TransactionNotFoundError` if none."""
        response = self.http.request(
            "GET", "/api/v1/transactions", params={"reference": reference}
        )
        return self.http.decode(response, Transaction.from_json)

    def get_transaction(self, transaction_id: uuid.UUID) -> Transaction:
        """One of this merchant's transactions."""
        response = self.http.request("GET", f"/api/v1/transactions/{transaction_id}")
        return self.http.decode(response, Transaction.from_json)

    def refund(self, transaction_id: uuid.UUID) -> StatusChange:
        """Refund a succeeded transaction (idempotent at the bank, so retried)."""
        response = self.http.request(
            "POST", f"/api/v1/transactions/{transaction_id}/refund", idempotent=True
        )
        return self.http.decode(response, StatusChange.from_json)

    def pay(self, transaction_id: uuid.UUID, account_id: uuid.UUID) -> StatusChange:
        """Pay a transaction from a customer's account (the customer's call)."""
        response = self.http.request(
            "POST",
            f"/api/v1/transactions/{transaction_id}/pay",
            json={"account_id": str(account_id)},
            authenticated=False,
        )
        return self.http.decode(response, StatusChange.from_json)

    def create_account(self, *, owner: str, balance: Decimal) -> Account:
        """Open a test account (the bank mock's, for tests and the walk-through)."""
        response = self.http.request(
            "POST",
            "/api/v1/accounts",
            json={"owner": owner, "balance": str(balance.quantize(Decimal("0.01")))},
            authenticated=False,
        )
        return self.http.decode(response, Account.from_json)

    def get_account(self, account_id: uuid.UUID) -> Account:
        """A test account and its balance."""
        response = self.http.request(
            "GET", f"/api/v1/accounts/{account_id}", authenticated=False
        )
        return self.http.decode(response, Account.from_json)
