"""Two poller processes over a few hundred pending payments whose callbacks never
came; one is SIGKILLed mid-batch: every payment is applied exactly once."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import uuid
from decimal import Decimal

import sqlalchemy as sa

from apps.payment.models import Payment, PaymentStatus
from clients.orders import OrderStatus
from tests.apps.payment.conftest import ORDERS, wait_for
from tests.apps.payment.test_crash_windows import CHILD, REPO
from tests.txcoord.conftest import rollback_all_prepared

COUNT = 200


def start_child(args):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, str(CHILD), json.dumps(args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
    )  # fmt: skip


def pending_paid_at_bank(infra, bank, count):
    """`count` PENDING payments, due now, each paid at the bank without a callback."""
    customer = bank.create_account(owner="customer", balance=Decimal("100000.00"))
    orders, payments = [], []
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    for _ in range(count):
        order_id, payment_id = uuid.uuid4(), uuid.uuid4()
        transaction = bank.create_transaction(
            reference=str(payment_id), amount=Decimal("10.00"), currency="RUB",
            callback_url="http://nowhere.test/",
        )  # fmt: skip
        bank.pay(transaction.id, customer.id)
        orders.append({
            "id": order_id, "buyer_id": uuid.uuid4(), "status": OrderStatus.PAYMENT_PENDING,
            "address_id": uuid.uuid4(), "currency": "RUB", "total": Decimal("10.00"),
            "expires_at": past + dt.timedelta(minutes=15),
        })  # fmt: skip
        payments.append({
            "id": payment_id, "order_id": order_id, "buyer_id": orders[-1]["buyer_id"],
            "status": PaymentStatus.PENDING, "amount": Decimal("10.00"), "currency": "RUB",
            "bank_transaction_id": transaction.id, "pay_url": transaction.pay_url,
            "next_check_at": past,
        })  # fmt: skip
    with infra.engine("orders").begin() as conn:
        conn.execute(sa.insert(ORDERS), orders)
    with infra.engine("payment").begin() as conn:
        conn.execute(sa.insert(Payment.__table__), payments)


def count(infra, database, sql):
    with infra.engine(database).connect() as conn:
        return conn.scalar(sa.text(sql))


def test_two_pollers_one_killed_mid_batch_apply_each_payment_exactly_once(
    ports, settings, bank_settings, bank, infra
):
    pending_paid_at_bank(infra, bank, COUNT)
    fast = dataclasses.replace(settings, payment_poll_lease=3, txcoord_timeout=2.0)
    args = {
        "mode": "poll", "settings": dataclasses.asdict(fast),
        "bank": dataclasses.asdict(bank_settings), "bank_delay": 0.02,
        "stop_after": 90,
    }  # fmt: skip
    children = [start_child({**args, "replica_id": f"poller-{n}"}) for n in (1, 2)]
    succeeded = "SELECT count(*) FROM payments WHERE status = 'SUCCEEDED'"
    try:
        assert wait_for(lambda: count(infra, "payment", succeeded) >= 40, 60)
        children[0].send_signal(signal.SIGKILL)
        assert children[0].wait(10) == -signal.SIGKILL
        assert count(infra, "payment", succeeded) < COUNT  # killed mid-way
        out, err = children[1].communicate(timeout=120)
        assert children[1].returncode == 0, err
        assert "finished" in out
        ports.coordinator.recovery(abort_after=0).run_once()
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait(10)
            for pipe in (child.stdout, child.stderr):
                pipe.close()
        rollback_all_prepared(infra.engine("payment"))
        rollback_all_prepared(infra.engine("orders"))

    assert count(infra, "payment", succeeded) == COUNT
    assert (
        count(infra, "orders", "SELECT count(*) FROM orders WHERE status = 'PAID'")
        == COUNT
    )
    assert count(infra, "orders", (
        "SELECT count(*) FROM (SELECT order_id FROM order_status_history"
        " WHERE to_status = 'PAID' GROUP BY order_id HAVING count(*) = 1) once"
    )) == COUNT  # fmt: skip
    assert count(infra, "orders", (
        "SELECT count(*) FROM outbox_events WHERE type = 'order.paid'"
    )) == COUNT  # fmt: skip
    assert count(infra, "payment", (
        "SELECT count(*) FROM outbox_events WHERE type = 'payment.succeeded'"
    )) == COUNT  # fmt: skip
    assert count(infra, "payment", (
        # The killed replica's claims stay only on payments it settled (no longer
        # due, as the poller takes PENDING ones only).
        "SELECT count(*) FROM payments WHERE claim_token IS NOT NULL"
        " AND status = 'PENDING'"
    )) == 0  # fmt: skip
