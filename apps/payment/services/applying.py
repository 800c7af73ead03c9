"""Applying a bank result: the one code path of callbacks and the poller.

In one txcoord transaction: the inbox row and the remembered signature (when the
result came as a callback), the payment PENDING → SUCCEEDED/FAILED with its
`payment.*` event (payment database), and the order → PAID/PAYMENT_FAILED through
`move_order` with its `order.*` event (orders database). The payment row is locked
first, so a result applied twice at once is applied by one of them; a payment no
longer PENDING takes nothing (duplicates, stale and reordered results).

A success for a payment that expired (its order may since have expired or been
cancelled) cannot be applied: it is refunded at the bank and recorded in
`refunded_at`, under the payment's row lock, and counted; the poller then stops
watching the payment. The refund is idempotent at the bank, so a transaction that
fails after it only leads to asking again; a refund the bank does not take aborts
the transaction, and the result is taken again later.
"""

from __future__ import annotations

import enum
import logging
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from apps.payment.metrics import LATE_REFUNDS, RESULTS, SETTLED, bank_call
from apps.payment.models import Payment, PaymentStatus
from apps.payment.services.ports import Ports
from apps.payment.states import BANK_RESULTS, sources_of
from chomik.jobs.scheduling import table_of
from chomik.messaging.consuming import InboxEntry, record_inbox
from chomik.messaging.outbox import emit, wake_relays
from chomik.signing import VerifiedSignature, remember_signature
from clients.bank import BankCallback, Transaction
from clients.events import PaymentFailed, PaymentSucceeded
from clients.orders import OrderStatus, move_order

log = logging.getLogger(__name__)

_PAYMENTS = table_of(Payment)
_ORDER_TARGETS = {
    PaymentStatus.SUCCEEDED: OrderStatus.PAID,
    PaymentStatus.FAILED: OrderStatus.PAYMENT_FAILED,
    PaymentStatus.EXPIRED: OrderStatus.PAYMENT_FAILED,
}


class Outcome(enum.StrEnum):
    """What taking one bank result did."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"  # this message was applied before (inbox)
    REPLAYED = "replayed"  # this signed message was seen before
    STALE = "stale"  # the payment is no longer PENDING
    UNKNOWN = "unknown"  # no payment has this reference
    MISMATCH = "mismatch"  # transaction or amount differ from the payment's
    REFUNDED = "refunded"  # a late success, refunded at the bank
    IGNORED = "ignored"  # a status that settles nothing (CREATED, REFUNDED)


@dataclass(frozen=True)
class BankResult:
    """What the bank says of one transaction, by callback or when asked."""

    transaction_id: uuid.UUID
    reference: str
    status: str
    amount: Decimal
    currency: str

    @classmethod
    def of_callback(cls, callback: BankCallback) -> BankResult:
        return cls(
            callback.transaction_id, callback.reference, callback.status,
            callback.amount, callback.currency,
        )  # fmt: skip

    @classmethod
    def of_transaction(cls, transaction: Transaction) -> BankResult:
        return cls(
            transaction.id, transaction.reference, transaction.status,
            transaction.amount, transaction.currency,
        )  # fmt: skip


@dataclass(frozen=True)
class Guard:
    """What makes a callback count once: its inbox row and its signature."""

    inbox: InboxEntry
    signature: VerifiedSignature


def apply_bank_result(
    ports: Ports, result: BankResult, *, source: str, guard: Guard | None = None
) -> Outcome:
    """Take one bank result for a payment, once; return what it did."""
    payment_id = _payment_id(result.reference)
    with ports.coordinator.transaction() as tx:
        branch = tx.session("payment")
        outcome = _guarded(branch, guard)
        if outcome is None:
            outcome = _apply(ports, tx, branch, payment_id, result)
    if outcome is Outcome.APPLIED:
        wake_relays(ports.payment_engine)
    RESULTS.labels(source, outcome.value).inc()
    if outcome is Outcome.APPLIED:
        SETTLED.labels(BANK_RESULTS[result.status].value.lower(), source).inc()
    if outcome is Outcome.REFUNDED:
        LATE_REFUNDS.inc()
    return outcome


def _guarded(branch: Session, guard: Guard | None) -> Outcome | None:
    """DUPLICATE or REPLAYED when the guard refuses the message, else None."""
    if guard is None:
        return None
    if not record_inbox(branch, guard.inbox):
        return Outcome.DUPLICATE
    signature = guard.signature
    if not remember_signature(
        branch, signature.replay_key, expires_at=signature.expires_at
    ):
        return Outcome.REPLAYED
    return None


def _apply(
    ports: Ports,
    tx: Any,
    branch: Session,
    payment_id: uuid.UUID | None,
    result: BankResult,
) -> Outcome:
    target = BANK_RESULTS.get(result.status)
    if target is None:
        return Outcome.IGNORED
    payment = _locked(branch, payment_id)
    if payment is None:
        log.warning("bank result for unknown reference %r", result.reference)
        return Outcome.UNKNOWN
    if not _matches(payment, result):
        log.warning("bank result %s disagrees with payment %s", result, payment.id)
        return Outcome.MISMATCH
    if payment.status in sources_of(target):
        _settle(tx, branch, payment, target)
        return Outcome.APPLIED
    late = payment.status is PaymentStatus.EXPIRED and result.status == "SUCCEEDED"
    if late and payment.refunded_at is None:
        _refund(ports, result.transaction_id)
        branch.execute(
            sa.update(_PAYMENTS)
            .where(_PAYMENTS.c.id == payment.id)
            .values(
                refunded_at=sa.func.now(), next_check_at=None, updated_at=sa.func.now()
            )
        )
        log.warning("payment %s: late success refunded at the bank", payment.id)
        return Outcome.REFUNDED
    return Outcome.STALE


def expire_payment(ports: Ports, payment_id: uuid.UUID) -> bool:
    """Expire a payment the bank never settled, and fail its order; False if not PENDING."""
    with ports.coordinator.transaction() as tx:
        branch = tx.session("payment")
        payment = _locked(branch, payment_id)
        if payment is None or payment.status not in sources_of(PaymentStatus.EXPIRED):
            return False
        _settle(tx, branch, payment, PaymentStatus.EXPIRED)
    wake_relays(ports.payment_engine)
    return True


def _settle(tx: Any, branch: Session, payment: Any, target: PaymentStatus) -> None:
    branch.execute(
        sa.update(_PAYMENTS)
        .where(_PAYMENTS.c.id == payment.id)
        .values(status=target, next_check_at=None, updated_at=sa.func.now())
    )
    move_order(
        tx.session("orders"), payment.order_id, to=_ORDER_TARGETS[target],
        reason=f"payment {payment.id} {target.value.lower()}",
        payment_id=str(payment.id),
    )  # fmt: skip
    ids = {"payment_id": str(payment.id), "order_id": str(payment.order_id)}
    if target is PaymentStatus.SUCCEEDED:
        emit(branch, PaymentSucceeded(**ids, amount=payment.amount))
    else:
        emit(branch, PaymentFailed(**ids, reason=target.value.lower()))


def _locked(branch: Session, payment_id: uuid.UUID | None) -> Any:
    if payment_id is None:
        return None
    return branch.execute(
        sa.select(_PAYMENTS).where(_PAYMENTS.c.id == payment_id).with_for_update()
    ).first()


def _matches(payment: Any, result: BankResult) -> bool:
    return (payment.bank_transaction_id, payment.amount, payment.currency) == (
        result.transaction_id, result.amount, result.currency,
    )  # fmt: skip


def _payment_id(reference: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(reference)
    except ValueError:
        return None


def _refund(ports: Ports, transaction_id: uuid.UUID) -> None:
    """Refund a transaction at the bank (idempotent there)."""
    with bank_call("refund"):
        ports.bank.refund(transaction_id)
