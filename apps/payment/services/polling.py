"""The poller's work on one claimed payment: ask the bank, apply its answer.

A result goes through `apply_bank_result`, as a callback's does, so whichever
comes first applies it and the other changes nothing. A payment the bank has not
settled within the payment TTL expires; its order may then be paid again.

The bank transaction of an expired payment stays payable: the buyer may still pay
it, and that success's callback may be lost. The poller keeps checking it, less and
less often, for `PAYMENT_LATE_WATCH` after the expiry; a success it finds is
refunded (`apply_bank_result`), so the late refund does not rest on the callback.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from apps.payment.metrics import EXPIRED, POLLED, bank_call
from apps.payment.models import PaymentStatus
from apps.payment.services.applying import BankResult, apply_bank_result, expire_payment
from apps.payment.services.ports import Ports
from apps.payment.states import BANK_RESULTS
from clients.bank import Transaction

# The longest wait between two checks of an expired payment's bank transaction.
LATE_CHECK_MAX = dt.timedelta(hours=1)


def poll_payment(ports: Ports, payment: Any) -> dt.datetime | None:
    """Check one payment at the bank; return when it is due again (None: never)."""
    transaction = _ask_bank(ports, payment)
    POLLED.labels(transaction.status).inc()
    if transaction.status in BANK_RESULTS:
        apply_bank_result(ports, BankResult.of_transaction(transaction), source="poll")
        return None
    if transaction.status != "CREATED":  # refunded: nothing is left to pay
        return None
    settings = ports.settings
    now = dt.datetime.now(dt.UTC)
    interval = dt.timedelta(seconds=settings.payment_poll_interval)
    expires_at = payment.created_at + dt.timedelta(seconds=settings.payment_ttl)
    if now < expires_at:
        return now + interval
    if payment.status == PaymentStatus.PENDING:
        if not expire_payment(ports, payment.id):
            return None  # settled meanwhile, by a callback
        EXPIRED.inc()
    return late_check(now, expires_at, interval, settings.payment_late_watch)


def late_check(
    now: dt.datetime, expires_at: dt.datetime, interval: dt.timedelta, watch: int
) -> dt.datetime | None:
    """When to check an expired payment's transaction again: a quarter of its time
    since the expiry, between `interval` and `LATE_CHECK_MAX`; None once `watch`
    seconds have passed since the expiry."""
    since = now - expires_at
    if since >= dt.timedelta(seconds=watch):
        return None
    return now + min(max(interval, since / 4), LATE_CHECK_MAX)


def _ask_bank(ports: Ports, payment: Any) -> Transaction:
    with bank_call("get"):
        return ports.bank.get_transaction(payment.bank_transaction_id)
