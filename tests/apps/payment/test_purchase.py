"""A purchase up to PAID across the real pieces: the payment app starts the payment,
the customer pays at the bank mock, the bank's own queued callback goes through the
gateway's edge onto the broker, and the payment worker applies it once."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from apps.gateway import create_app as create_gateway
from apps.gateway.settings import GatewaySettings
from apps.payment.consumers import consumers
from chomik.signing import HEADER, sign
from chomik.webhooks import body_bytes
from chomik.worker import Worker
from clients.events import BANK_CALLBACKS
from clients.orders import OrderStatus
from tests.apps.payment.conftest import (
    SECRET,
    order_status,
    outbox_types,
    pay_at_bank,
    payments_of,
    wait_for,
)
from tests.apps.payment.test_worker import FAST_GROUP


def queued_at_bank(infra, transaction_id):
    """The callbacks the bank queued for a transaction, as it will send them."""
    with infra.engine("bank").connect() as conn:
        rows = conn.execute(
            sa.text("SELECT body FROM outgoing_callbacks WHERE key = :key"),
            {"key": str(transaction_id)},
        ).all()
    return [body_bytes(row.body) for row in rows]


def test_a_buyer_pays_an_order_and_it_becomes_paid_once(
    committed_db, ports, settings, settings_for, jwt_keys, client, buyer,
    place_order, bank,
):  # fmt: skip
    gateway = create_gateway(
        settings_for(
            GatewaySettings, bank_callback_secrets=SECRET,
            jwt_private_key_file=str(jwt_keys.public_file.parent / "jwt-private.pem"),
        )
    )  # fmt: skip
    worker = Worker(
        f"payment-{uuid.uuid4().hex[:6]}", settings, consumers=consumers(ports),
        topics=[BANK_CALLBACKS], relay=False, kit_jobs=False,
        consumer_options=FAST_GROUP,
    )  # fmt: skip
    order_id = place_order(buyer.id, total="99.90")
    worker.start()
    try:
        started = client.post(
            f"/api/v1/orders/{order_id}/payment", headers=buyer.headers
        )
        assert started.status_code == 201, started.json
        transaction = bank.find_transaction(started.json["id"])
        assert pay_at_bank(bank, transaction.id).status == "SUCCEEDED"
        (body,) = queued_at_bank(committed_db, transaction.id)
        edge = gateway.test_client()
        for _ in range(2):  # the bank sends it again: accepted, applied once
            answer = edge.post(
                "/api/v1/callbacks/bank", data=body,
                headers={HEADER: sign(body, SECRET),
                         "Content-Type": "application/json"},
            )  # fmt: skip
            assert answer.status_code == 202, answer.data
        assert wait_for(
            lambda: order_status(committed_db, order_id) is OrderStatus.PAID, 60
        )
    finally:
        worker.stop()
        worker.join(15)
        gateway.extensions["chomik.gateway"].publisher.close()
        gateway.extensions["chomik.gateway"].forwarder.close()
        gateway.extensions["chomik"].engine.dispose()

    (payment,) = payments_of(committed_db, order_id)
    assert payment.status == "SUCCEEDED"
    assert str(payment.amount) == "99.90"
    assert outbox_types(committed_db, "orders").count("order.paid") == 1
    assert outbox_types(committed_db, "payment").count("payment.succeeded") == 1
