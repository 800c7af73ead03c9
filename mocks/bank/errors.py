"""Problem types of the bank mock.

Problem
├── UnauthorizedError
│   └── UnknownMerchantError        401 unknown-merchant
├── ForbiddenError
│   └── MerchantMismatchError       403 merchant-mismatch
├── NotFoundError
│   ├── AccountNotFoundError        404 account-not-found
│   └── TransactionNotFoundError    404 transaction-not-found
├── ConflictError
│   ├── ReferenceConflictError      409 reference-conflict
│   └── IllegalTransitionError      409 illegal-transition
├── ValidationProblem
│   └── MerchantPaysItselfError     422 merchant-pays-itself
└── UnavailableError
    └── BankUnavailableError        503 bank-unavailable (a fault switch)
"""

from __future__ import annotations

from chomik.problems import (
    ConflictError,
    ForbiddenError,
    NotFoundError,
    UnauthorizedError,
    UnavailableError,
    ValidationProblem,
)


class UnknownMerchantError(UnauthorizedError):
    type, title = "unknown-merchant", "Unknown merchant token"


class MerchantMismatchError(ForbiddenError):
    type, title = "merchant-mismatch", "The token belongs to another merchant account"


class AccountNotFoundError(NotFoundError):
    type, title = "account-not-found", "Account not found"


class TransactionNotFoundError(NotFoundError):
    type, title = "transaction-not-found", "Transaction not found"


class ReferenceConflictError(ConflictError):
    type, title = "reference-conflict", "The reference names another transaction"


class IllegalTransitionError(ConflictError):
    type, title = "illegal-transition", "Illegal transaction transition"


class MerchantPaysItselfError(ValidationProblem):
    type, title = (
        "merchant-pays-itself",
        "The merchant's account cannot pay its own transaction",
    )

    def __init__(self) -> None:
        super().__init__(
            {"account_id": ["The transaction's own merchant account."]},
            "A transaction is paid from another account than the merchant's",
        )


class BankUnavailableError(UnavailableError):
    type, title = "bank-unavailable", "The bank is unavailable"
