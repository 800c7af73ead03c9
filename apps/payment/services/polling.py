"""The poller's work on one claimed PENDING payment: ask the bank, apply its answer.

A result goes through `apply_bank_result`, as a callback's does, so whichever
comes first applies it and the other changes nothing. A payment the bank has not
settled within the payment TTL expires; its order may then be paid again.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from apps.payment.metrics import EXPIRED, POLLED, bank_call
from apps.payment.services.applying import BankResult, apply_bank_result, expire_payment
from apps.payment.services.ports import Ports
from apps.payment.states import BANK_RESULTS
from clients.bank import Transaction


def poll_payment(ports: Ports, payment: Any) -> dt.datetime | None:
    """Check one PENDING payment at the bank; return when it is due again (None: never)."""
    transaction = _ask_bank(ports, payment)
    POLLED.labels(transaction.status).inc()
    if transaction.status in BANK_RESULTS:
        apply_bank_result(ports, BankResult.of_transaction(transaction), source="poll")
        return None
    now = dt.datetime.now(dt.UTC)
    settings = ports.settings
    if payment.created_at + dt.timedelta(seconds=settings.payment_ttl) <= now:
        if expire_payment(ports, payment.id):
            EXPIRED.inc()
        return None
    return now + dt.timedelta(seconds=settings.payment_poll_interval)


def _ask_bank(ports: Ports, payment: Any) -> Transaction:
    with bank_call("get"):
        return ports.bank.get_transaction(payment.bank_transaction_id)
