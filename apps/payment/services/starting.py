"""Starting a payment: claim, ask the bank, then one two-phase commit over both databases.

1. A short local transaction claims the order: a STARTING payment row, unique per
   order among open payments (a partial unique index). A parallel start for the
   same order finds that row and goes on with the same payment id.
2. The bank is asked for a transaction with the payment id as its reference;
   the bank answers the same transaction for the same reference, so parallel
   starts, or a start after a crash, make one bank transaction.
3. One txcoord transaction moves the payment STARTING → PENDING with the bank's
   data (payment database) and the order to PAYMENT_PENDING through `move_order`
   (orders database), with an outbox row in each; the amount is taken from the
   order row read in that transaction. Only one start makes that move; the others
   find the payment PENDING and answer it. The payment row is locked before the
   order row, as when a result is applied, so the two never wait on each other
   across the databases.

An order past its payment deadline (`expires_at`) is not paid, also while the
orders' expiry job has not yet moved it to EXPIRED: the start is refused (409
order-not-payable) when the order is read, and again under the order's row lock
in step 3, so a start racing the deadline cannot slip through. The expiry job asks
the same question (`deadline_passed` against `utcnow()`) under the same row lock,
so an order is either expired or paying, never both. Refused in step 3, the claim
is given back and the bank transaction stays unpaid: its pay_url was never handed
out, so no money moves.

The bank away: the claim is given back, nothing is stored, the order is unchanged.
A parallel start that shared that claim, and whose own bank call went through,
then finds its claim gone: it reads the order again and claims anew (a new payment
id, so a new bank transaction; the first one's pay_url was never handed out), at
most CLAIM_ATTEMPTS times, then answers 503. A shared claim that another start
opened and that already ended is a 409: nobody asked for a second payment.
The bank refusing the transaction as invalid (400 or 422: an amount it does not
take): the same, and the start is refused (422 payment-refused); a start again is
refused again and never leaves a claim behind. Any other failure of the bank call
(our merchant token refused: a 500) gives the claim back too.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from apps.payment.errors import (
    BankUnavailableError,
    OrderNotFoundError,
    OrderNotPayableError,
    PaymentRefusedError,
)
from apps.payment.metrics import STARTS, bank_call
from apps.payment.models import OPEN_STATUSES, Payment, PaymentStatus
from apps.payment.services.ports import Ports
from apps.payment.services.reading import PaymentView, view_of
from apps.payment.states import sources_of
from chomik.auth import Principal, user_uuid
from chomik.db import new_metadata, utcnow
from chomik.jobs.scheduling import table_of
from chomik.messaging.outbox import emit, wake_relays
from chomik.transient import TransientError
from clients.bank import BadRequestError, ClientError, Transaction
from clients.events import PaymentStarted
from clients.orders import (
    IllegalTransitionError,
    OrderStatus,
    deadline_passed,
    define_order_tables,
    move_order,
)
from clients.orders import sources_of as order_sources_of

log = logging.getLogger(__name__)

_ORDERS = define_order_tables(new_metadata()).orders
_PAYABLE = order_sources_of(OrderStatus.PAYMENT_PENDING)
_PAYMENTS = table_of(Payment)


@dataclass(frozen=True)
class Started:
    """A start's answer: the payment, and whether this call opened it."""

    payment: PaymentView
    created: bool


# Claims made by one start: a sibling start sharing the claim may give it back
# (its bank call failed), and this one then reads the order again and claims anew.
CLAIM_ATTEMPTS = 3


class _AlreadyStartedError(Exception):
    """The claim is no longer STARTING: moved on by another start, or given back."""


def start_payment(ports: Ports, *, user: Principal, order_id: uuid.UUID) -> Started:
    """Open the order's payment at the bank, or answer the one already open."""
    for _ in range(CLAIM_ATTEMPTS):
        started = _start_once(ports, _owned_order(ports, user, order_id))
        if started is not None:
            return started
    STARTS.labels("bank_unavailable").inc()
    raise BankUnavailableError(
        f"Parallel starts of order {order_id} kept failing at the bank"
    )


def _start_once(ports: Ports, order: Any) -> Started | None:
    """One claim and its bank call; None when a sibling start gave the claim back."""
    order_id = order.id
    claimed = _claim(ports, order)
    if claimed.status is PaymentStatus.PENDING:
        STARTS.labels("existing").inc()
        return Started(view_of(claimed), created=False)
    transaction = _create_at_bank(ports, claimed)
    try:
        _commit_start(ports, claimed, transaction)
    except _AlreadyStartedError:
        payment = _payment_now(ports, claimed.id)
        if payment is None:  # given back: claim anew
            return None
        if payment.status is not PaymentStatus.PENDING:  # and already ended
            STARTS.labels("not_payable").inc()
            raise OrderNotPayableError(f"Order {order_id} cannot be paid now") from None
        STARTS.labels("existing").inc()
        return Started(view_of(payment), created=False)
    except OrderNotPayableError:  # the deadline passed while we asked the bank
        _give_back(ports, claimed.id)
        raise
    except IllegalTransitionError as exc:
        _give_back(ports, claimed.id)
        STARTS.labels("not_payable").inc()
        raise OrderNotPayableError(
            f"Order {order_id} cannot be paid now",
            order_status=exc.extra["status_from"],
        ) from exc
    STARTS.labels("created").inc()
    return Started(_payment_view(ports, claimed.id), created=True)


def _owned_order(ports: Ports, user: Principal, order_id: uuid.UUID) -> Any:
    """The caller's order (404 for anyone else's), payable or with an open payment.

    A payable order past its deadline is refused; one with an open payment is not,
    as that payment started in time and is answered again.
    """
    with ports.orders_engine.connect() as conn:
        order = conn.execute(
            sa.select(_ORDERS.c.id, _ORDERS.c.buyer_id, _ORDERS.c.status,
                      _ORDERS.c.total, _ORDERS.c.currency, _ORDERS.c.expires_at)
            .where(_ORDERS.c.id == order_id)
        ).first()  # fmt: skip
    if order is None or order.buyer_id != user_uuid(user):
        raise OrderNotFoundError(f"No order {order_id}")
    if order.status not in _PAYABLE and order.status != OrderStatus.PAYMENT_PENDING:
        STARTS.labels("not_payable").inc()
        raise OrderNotPayableError(
            f"Order {order_id} is {order.status.value}", order_status=order.status.value
        )
    _check_deadline(order_id, order)
    return order


def _check_deadline(order_id: uuid.UUID, order: Any) -> None:
    """Refuse a payable order whose payment deadline has passed (409)."""
    if order.status in _PAYABLE and deadline_passed(order.expires_at, utcnow()):
        STARTS.labels("not_payable").inc()
        raise OrderNotPayableError(
            f"The payment deadline of order {order_id} passed",
            order_status=order.status.value,
        )


def _claim(ports: Ports, order: Any) -> Payment:
    """The order's open payment: a new STARTING row, or the one already there."""
    with ports.sessions.begin() as session:
        session.execute(
            insert(_PAYMENTS)
            .values(
                id=uuid.uuid4(), order_id=order.id, buyer_id=order.buyer_id,
                status=PaymentStatus.STARTING, amount=order.total,
                currency=order.currency,
            )
            .on_conflict_do_nothing(
                index_elements=["order_id"],
                index_where=_PAYMENTS.c.status.in_(OPEN_STATUSES),
            )
        )  # fmt: skip
        payment = session.scalar(
            sa.select(Payment).where(
                Payment.order_id == order.id, Payment.status.in_(OPEN_STATUSES)
            )
        )
    if payment is None:  # the open one became final in between
        raise OrderNotPayableError(f"Order {order.id} cannot be paid now")
    if payment.status is PaymentStatus.STARTING and order.status not in _PAYABLE:
        _give_back(ports, payment.id)
        raise OrderNotPayableError(
            f"Order {order.id} is {order.status.value}", order_status=order.status.value
        )
    return payment


def _create_at_bank(ports: Ports, payment: Payment) -> Transaction:
    """The bank transaction of this payment (the same one for the same reference)."""
    try:
        with bank_call("create"):
            return ports.bank.create_transaction(
                reference=str(payment.id),
                amount=payment.amount,
                currency=payment.currency,
                callback_url=ports.settings.bank_callback_url,
            )
    except TransientError as exc:
        STARTS.labels("bank_unavailable").inc()
        _give_back(ports, payment.id)
        log.warning("payment %s: the bank is unavailable: %r", payment.id, exc)
        raise BankUnavailableError("The bank did not open the payment") from exc
    except ClientError as exc:
        _give_back(ports, payment.id)
        if not _refuses_the_amount(exc):
            # Any other answer (our callback URL, merchant token or account
            # refused, a malformed answer) is no fault of the buyer's: a 500.
            raise
        STARTS.labels("refused").inc()
        log.warning("payment %s: the bank refused it: %s", payment.id, exc)
        raise PaymentRefusedError(
            f"The bank refused a payment of {payment.amount} {payment.currency} "
            f"for order {payment.order_id}",
            amount=payment.amount,
            currency=payment.currency,
        ) from exc


# The fields of a bank transaction that are the payment's own, not our settings'.
_AMOUNT_FIELDS = frozenset({"amount", "currency"})


def _refuses_the_amount(exc: ClientError) -> bool:
    """A 400 or 422 of the bank's naming the amount or the currency, nothing else."""
    if not isinstance(exc, BadRequestError):
        return False
    errors = exc.problem.get("errors")
    return isinstance(errors, dict) and bool(errors) and set(errors) <= _AMOUNT_FIELDS


def _commit_start(ports: Ports, payment: Payment, transaction: Transaction) -> None:
    """PENDING payment and PAYMENT_PENDING order, in one coordinated transaction.

    Raises OrderNotPayableError, with nothing written, when the order's payment
    deadline passed: checked under the order's row lock, which the expiry job takes
    too, so the order is either expired or paying, never both.
    """
    poll_at = dt.datetime.now(dt.UTC) + dt.timedelta(
        seconds=ports.settings.payment_poll_after
    )
    with ports.coordinator.transaction() as tx:
        branch = tx.session("payment")
        moved = branch.execute(
            sa.update(_PAYMENTS)
            .where(
                _PAYMENTS.c.id == payment.id,
                _PAYMENTS.c.status.in_(sources_of(PaymentStatus.PENDING)),
            )
            .values(
                status=PaymentStatus.PENDING,
                bank_transaction_id=transaction.id,
                pay_url=transaction.pay_url,
                next_check_at=poll_at,
                updated_at=sa.func.now(),
            )
            .returning(_PAYMENTS.c.id)
        ).first()
        if moved is None:
            raise _AlreadyStartedError(str(payment.id))
        orders = tx.session("orders")
        order = orders.execute(
            sa.select(_ORDERS.c.status, _ORDERS.c.total, _ORDERS.c.currency,
                      _ORDERS.c.expires_at)
            .where(_ORDERS.c.id == payment.order_id)
            .with_for_update()
        ).one()  # fmt: skip
        _check_deadline(payment.order_id, order)
        _check_amount(payment, order, transaction)
        branch.execute(
            sa.update(_PAYMENTS)
            .where(_PAYMENTS.c.id == payment.id)
            .values(amount=order.total, currency=order.currency)
        )
        move_order(
            orders, payment.order_id, to=OrderStatus.PAYMENT_PENDING,
            reason=f"payment {payment.id} started",
        )  # fmt: skip
        emit(
            branch,
            PaymentStarted(
                payment_id=str(payment.id), order_id=str(payment.order_id),
                amount=order.total, currency=order.currency,
            ),
        )  # fmt: skip
    wake_relays(ports.payment_engine)


def _check_amount(payment: Payment, order: Any, transaction: Transaction) -> None:
    """The order, the claim and the bank transaction name one amount."""
    amounts = {
        (order.total, order.currency),
        (payment.amount, payment.currency),
        (transaction.amount, transaction.currency),
    }
    if len(amounts) != 1:
        raise RuntimeError(
            f"payment {payment.id}: the order, the claim and the bank disagree "
            f"on the amount: {sorted(map(str, amounts))}"
        )


def _give_back(ports: Ports, payment_id: uuid.UUID) -> None:
    """Drop a claim that did not become a payment (nothing stays of it)."""
    with ports.sessions.begin() as session:
        session.execute(
            sa.delete(_PAYMENTS).where(
                _PAYMENTS.c.id == payment_id,
                _PAYMENTS.c.status == PaymentStatus.STARTING,
            )
        )


def _payment_view(ports: Ports, payment_id: uuid.UUID) -> PaymentView:
    with ports.sessions() as session:
        return view_of(session.get_one(Payment, payment_id))


def _payment_now(ports: Ports, payment_id: uuid.UUID) -> Payment | None:
    """The payment as it is now (None: its claim was given back)."""
    with ports.sessions() as session:
        return session.get(Payment, payment_id)
