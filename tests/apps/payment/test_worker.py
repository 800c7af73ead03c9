"""The payment worker against the test broker: callbacks from `bank.callbacks`,
each sent twice and in reverse order, are applied once each."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from apps.payment.consumers import consumers
from chomik.messaging.kafka import make_producer
from chomik.worker import Worker
from clients.events import BANK_CALLBACKS
from clients.orders import OrderStatus
from tests.apps.payment.conftest import (
    callback_body,
    order_status,
    pay_at_bank,
    payments_of,
    queued_callback,
    wait_for,
)

FAST_GROUP = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}


def publish(bootstrap, envelopes):
    producer = make_producer(bootstrap)
    for envelope in envelopes:
        producer.send(
            BANK_CALLBACKS, key=envelope.key.encode(), value=envelope.to_json()
        )
    producer.flush(10)
    producer.close()


def history(infra, order_id):
    with infra.engine("orders").connect() as conn:
        return list(
            conn.scalars(
                sa.text(
                    "SELECT to_status FROM order_status_history"
                    " WHERE order_id = :id ORDER BY id"
                ),
                {"id": order_id},
            )
        )


def test_callbacks_sent_twice_and_in_reverse_order_are_applied_once(
    committed_db, ports, settings, client, buyer, place_order, bank
):
    orders = {}
    for balance in ("1000.00", "1.00", "1000.00"):
        order_id = place_order(buyer.id)
        response = client.post(
            f"/api/v1/orders/{order_id}/payment", headers=buyer.headers
        )
        transaction = bank.find_transaction(response.json["id"])
        pay_at_bank(bank, transaction.id, balance=balance)
        orders[order_id] = bank.get_transaction(transaction.id)
    envelopes = []
    for transaction in reversed(orders.values()):
        message = queued_callback(callback_body(transaction))
        resent = queued_callback(message.data["body"].encode())
        envelopes += [message, message, resent]
    worker = Worker(  # a group of its own: no wait for members of earlier tests
        f"payment-{uuid.uuid4().hex[:6]}", settings, consumers=consumers(ports),
        topics=[BANK_CALLBACKS], relay=False, kit_jobs=False,
        consumer_options=FAST_GROUP,
    )  # fmt: skip
    worker.start()
    try:
        publish(committed_db.kafka, envelopes)
        assert wait_for(
            lambda: all(
                payments_of(committed_db, o)[0].status != "PENDING" for o in orders
            ),
            timeout=60,
        )
    finally:
        worker.stop()
        worker.join(15)

    expected = {"SUCCEEDED": OrderStatus.PAID, "FAILED": OrderStatus.PAYMENT_FAILED}
    for order_id, transaction in orders.items():
        (payment,) = payments_of(committed_db, order_id)
        assert payment.status == transaction.status
        assert order_status(committed_db, order_id) is expected[transaction.status]
        assert history(committed_db, order_id) == [
            "PAYMENT_PENDING", expected[transaction.status].value,
        ]  # fmt: skip
