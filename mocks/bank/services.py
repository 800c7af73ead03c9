"""The bank's rules: accounts, merchants' transactions, paying and refunding them.

Every status change queues a signed callback to the transaction's `callback_url` in
the same transaction (`chomik.webhooks`), so a change is never lost nor announced
without having happened. The callback's `event_id` is derived from the transaction
and the status, so a change announced again carries the same one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from chomik.db import utcnow
from chomik.webhooks import Faults, current_faults, enqueue_callback
from mocks.bank.errors import (
    AccountNotFoundError,
    BankUnavailableError,
    IllegalTransitionError,
    MerchantPaysItselfError,
    ReferenceConflictError,
    TransactionNotFoundError,
)
from mocks.bank.models import Account, Transaction, TransactionStatus

EVENT_NAMESPACE = uuid.UUID("5b0a1c3e-8d4f-4e61-9a57-0c1b2d3e4f50")
MERCHANT_OWNER = "merchant"


@dataclass(frozen=True)
class NewTransaction:
    """What a merchant asks the bank for."""

    merchant_account_id: uuid.UUID
    reference: str
    amount: Decimal
    currency: str
    callback_url: str


def create_account(session: Session, *, owner: str, balance: Decimal) -> Account:
    """Open an account with a test balance."""
    account = Account(owner=owner, balance=balance)
    session.add(account)
    session.flush()
    return account


def access_account(session: Session, account_id: uuid.UUID) -> Account:
    """The account, or `AccountNotFoundError`."""
    account = session.get(Account, account_id)
    if account is None:
        raise AccountNotFoundError(account_id=str(account_id))
    return account


def ensure_merchant_account(session: Session, account_id: uuid.UUID) -> None:
    """Open a configured merchant's account (empty) if it does not exist yet."""
    session.execute(
        insert(Account)
        .values(id=account_id, owner=MERCHANT_OWNER, balance=Decimal(0))
        .on_conflict_do_nothing(index_elements=["id"])
    )


def refuse_if_unavailable(session: Session, defaults: Faults) -> None:
    """Answer 503 while the `unavailable_until` fault switch is on."""
    faults = current_faults(session, defaults)
    if faults.unavailable():
        wait = max(1, int(faults.unavailable_until - utcnow().timestamp()))
        raise BankUnavailableError(headers={"Retry-After": str(wait)})


def create_transaction(
    session: Session, request: NewTransaction
) -> tuple[Transaction, bool]:
    """Create a transaction, or return the merchant's one with this reference.

    Idempotent by (merchant, reference), also between concurrent calls: the insert
    skips on the unique key and the winner's row is read back. The same reference
    with another amount or currency is a `ReferenceConflictError`. Returns the
    transaction and whether it was created now.
    """
    ensure_merchant_account(session, request.merchant_account_id)
    inserted = session.scalar(
        insert(Transaction)
        .values(
            id=uuid.uuid4(),
            merchant_account_id=request.merchant_account_id,
            reference=request.reference,
            amount=request.amount,
            currency=request.currency,
            callback_url=request.callback_url,
            status=TransactionStatus.CREATED,
        )
        .on_conflict_do_nothing(constraint="uq_transactions_merchant_reference")
        .returning(Transaction.id)
    )
    transaction = find_transaction(
        session,
        merchant_account_id=request.merchant_account_id,
        reference=request.reference,
    )
    if (transaction.amount, transaction.currency) != (request.amount, request.currency):
        raise ReferenceConflictError(
            f"reference {request.reference!r} is a transaction of "
            f"{transaction.amount} {transaction.currency}",
            transaction_id=str(transaction.id),
        )
    return transaction, inserted is not None


def find_transaction(
    session: Session, *, merchant_account_id: uuid.UUID, reference: str
) -> Transaction:
    """The merchant's transaction with this reference, or `TransactionNotFoundError`."""
    transaction = session.scalar(
        sa.select(Transaction).where(
            Transaction.merchant_account_id == merchant_account_id,
            Transaction.reference == reference,
        )
    )
    if transaction is None:
        raise TransactionNotFoundError(reference=reference)
    return transaction


def access_transaction(
    session: Session,
    *,
    merchant_account_id: uuid.UUID,
    transaction_id: uuid.UUID,
    for_update: bool = False,
) -> Transaction:
    """The merchant's transaction; another merchant's is not found either."""
    transaction = _transaction(session, transaction_id, for_update=for_update)
    if transaction.merchant_account_id != merchant_account_id:
        raise TransactionNotFoundError(transaction_id=str(transaction_id))
    return transaction


def _transaction(
    session: Session, transaction_id: uuid.UUID, *, for_update: bool
) -> Transaction:
    transaction = session.get(
        Transaction, transaction_id, with_for_update=for_update, populate_existing=True
    )
    if transaction is None:
        raise TransactionNotFoundError(transaction_id=str(transaction_id))
    return transaction


def _lock_accounts(session: Session, *ids: uuid.UUID) -> dict[uuid.UUID, Account]:
    """Lock accounts in id order (two payments never wait on each other in a cycle)."""
    accounts = session.scalars(
        sa.select(Account)
        .where(Account.id.in_(ids))
        .order_by(Account.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    return {account.id: account for account in accounts}


def pay_transaction(
    session: Session, *, transaction_id: uuid.UUID, account_id: uuid.UUID
) -> Transaction:
    """Pay a CREATED transaction from an account: SUCCEEDED, or FAILED if short.

    The merchant's own account cannot pay (`MerchantPaysItselfError`): its balance
    would not change.

    Locks the transaction, then both accounts in id order; the money moves and the
    callback is queued in the caller's transaction, all or nothing. A transaction
    that is no longer CREATED is an `IllegalTransitionError`.
    """
    transaction = _transaction(session, transaction_id, for_update=True)
    accounts = _lock_accounts(session, account_id, transaction.merchant_account_id)
    payer = accounts.get(account_id)
    if payer is None:
        raise AccountNotFoundError(account_id=str(account_id))
    if transaction.status != TransactionStatus.CREATED:
        raise IllegalTransitionError(
            f"the transaction is {transaction.status.value}",
            transaction_status=transaction.status.value,
        )
    if account_id == transaction.merchant_account_id:
        # The money would leave and reach one account: nothing paid.
        raise MerchantPaysItselfError()
    transaction.payer_account_id = account_id
    if payer.balance < transaction.amount:
        _move(session, transaction, TransactionStatus.FAILED)
        return transaction
    payer.balance -= transaction.amount
    accounts[transaction.merchant_account_id].balance += transaction.amount
    _move(session, transaction, TransactionStatus.SUCCEEDED)
    return transaction


def refund_transaction(
    session: Session, *, merchant_account_id: uuid.UUID, transaction_id: uuid.UUID
) -> Transaction:
    """Give a SUCCEEDED transaction's money back to its payer (idempotent).

    Same locks as paying. A refunded transaction is returned as it is; one that
    never succeeded is an `IllegalTransitionError`.
    """
    transaction = access_transaction(
        session,
        merchant_account_id=merchant_account_id,
        transaction_id=transaction_id,
        for_update=True,
    )
    if transaction.status == TransactionStatus.REFUNDED:
        return transaction
    if transaction.status != TransactionStatus.SUCCEEDED:
        raise IllegalTransitionError(
            f"a {transaction.status.value} transaction cannot be refunded",
            transaction_status=transaction.status.value,
        )
    assert transaction.payer_account_id is not None  # set by every success
    accounts = _lock_accounts(
        session, transaction.payer_account_id, merchant_account_id
    )
    accounts[merchant_account_id].balance -= transaction.amount
    accounts[transaction.payer_account_id].balance += transaction.amount
    _move(session, transaction, TransactionStatus.REFUNDED)
    return transaction


def _move(
    session: Session, transaction: Transaction, status: TransactionStatus
) -> None:
    """Set the status and queue its callback."""
    transaction.status = status
    transaction.updated_at = utcnow()
    session.flush()
    event_id = uuid.uuid5(EVENT_NAMESPACE, f"{transaction.id}:{status.value}")
    payload = {
        "event_id": str(event_id),
        "transaction_id": str(transaction.id),
        "reference": transaction.reference,
        "status": status.value,
        "amount": str(transaction.amount),
        "currency": transaction.currency,
        "occurred_at": transaction.updated_at.isoformat(),
    }
    enqueue_callback(
        session,
        transaction.callback_url,
        payload,
        key=str(transaction.id),
        event_id=event_id,
    )
