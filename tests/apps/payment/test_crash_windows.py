"""The process applying a bank result SIGKILLed in each window of txcoord's commit:
after recovery the payment and the order agree, and the callback read again (its
offset was never committed) is applied exactly once."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from apps.payment.consumers import consumers
from clients.events import BankCallbackReceived
from clients.orders import OrderStatus
from tests.apps.payment.conftest import (
    callback_body,
    inbox_entry,
    order_status,
    outbox_types,
    pay_at_bank,
    payments_of,
    queued_callback,
)
from tests.txcoord.conftest import rollback_all_prepared

REPO = Path(__file__).resolve().parents[3]
CHILD = Path(__file__).with_name("child.py")

WINDOWS = [
    # injection point (payment's branch is opened, so prepared, first), committed?
    ("after_prepare:payment", False),
    ("before_decision", False),
    ("after_decision", True),
    ("after_commit:payment", True),
]


def run_child(args, timeout=60):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, str(CHILD), json.dumps(args)],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO, check=False,
    )  # fmt: skip


def child_args(settings, bank_settings, **extra):
    return {
        "settings": dataclasses.asdict(settings),
        "bank": dataclasses.asdict(bank_settings),
        "bank_delay": 0.0,
        **extra,
    }


def prepared(infra):
    found = {}
    for name in ("payment", "orders"):
        with infra.engine(name).connect() as conn:
            found[name] = conn.exec_driver_sql(
                "SELECT gid FROM pg_prepared_xacts WHERE database = current_database()"
            ).all()
    return found


@pytest.mark.parametrize(("point", "committed"), WINDOWS)
def test_a_result_killed_between_the_phases_ends_applied_once_in_both_databases(
    ports, settings, bank_settings, client, buyer, place_order, bank, infra,
    point, committed,
):  # fmt: skip
    order_id = place_order(buyer.id)
    response = client.post(f"/api/v1/orders/{order_id}/payment", headers=buyer.headers)
    transaction = bank.find_transaction(response.json["id"])
    pay_at_bank(bank, transaction.id)
    envelope = queued_callback(callback_body(bank.get_transaction(transaction.id)))
    try:
        child = run_child(
            child_args(settings, bank_settings, mode="apply", crash_at=point,
                       envelope=envelope.to_json().decode())
        )  # fmt: skip
        assert child.returncode == -signal.SIGKILL, child.stderr
        assert any(prepared(infra).values())  # in doubt until recovery

        ports.coordinator.recovery(abort_after=0).run_once()

        assert prepared(infra) == {"payment": [], "orders": []}
        (payment,) = payments_of(infra, order_id)
        agreed = (payment.status, order_status(infra, order_id))
        if committed:
            assert agreed == ("SUCCEEDED", OrderStatus.PAID)
        else:
            assert agreed == ("PENDING", OrderStatus.PAYMENT_PENDING)

        handler = consumers(ports)[BankCallbackReceived.type]
        assert handler(inbox_entry(envelope), envelope) is not committed
    finally:
        rollback_all_prepared(infra.engine("payment"))
        rollback_all_prepared(infra.engine("orders"))

    (payment,) = payments_of(infra, order_id)
    assert (payment.status, order_status(infra, order_id)) == (
        "SUCCEEDED", OrderStatus.PAID,
    )  # fmt: skip
    assert outbox_types(infra, "orders").count("order.paid") == 1
    assert outbox_types(infra, "payment").count("payment.succeeded") == 1
