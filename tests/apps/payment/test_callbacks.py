"""Bank callbacks from `bank.callbacks`: verified again, applied once in one 2PC."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import sqlalchemy as sa

from apps.payment.consumers import consumers
from clients.events import BankCallbackReceived
from clients.orders import OrderStatus
from tests.apps.payment.conftest import (
    callback_body,
    counted,
    inbox_entry,
    order_status,
    outbox_types,
    pay_at_bank,
    payments_of,
    queued_callback,
)


@pytest.fixture
def handler(ports):
    return consumers(ports)[BankCallbackReceived.type]


@pytest.fixture
def pending(client, buyer, place_order, bank):
    """A PENDING payment and its bank transaction, paid by the customer."""

    def make(*, balance="1000.00"):
        order_id = place_order(buyer.id)
        response = client.post(
            f"/api/v1/orders/{order_id}/payment", headers=buyer.headers
        )
        assert response.status_code == 201, response.json
        transaction = bank.find_transaction(response.json["id"])
        pay_at_bank(bank, transaction.id, balance=balance)
        return order_id, bank.get_transaction(transaction.id)

    return make


def outcomes():
    names = ("applied", "replayed", "stale", "bad_signature", "mismatch", "unknown",
             "malformed")  # fmt: skip
    return {
        name: counted("payment_bank_results_total", source="callback", outcome=name)
        for name in names
    }


def grown(before, after):
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


def deliver(handler, envelope):
    return handler(inbox_entry(envelope), envelope)


def state(infra, order_id):
    (payment,) = payments_of(infra, order_id)
    return payment.status, order_status(infra, order_id)


def events(infra):
    return outbox_types(infra, "payment"), outbox_types(infra, "orders")


def test_a_success_pays_the_order_once(handler, pending, infra):
    order_id, transaction = pending()
    envelope = queued_callback(callback_body(transaction))
    settled = counted("payment_settled_total", status="succeeded", source="callback")
    timed = counted("payment_callback_apply_seconds_count")

    assert deliver(handler, envelope) is True
    assert (
        counted("payment_settled_total", status="succeeded", source="callback")
        == settled + 1
    )
    assert counted("payment_callback_apply_seconds_count") == timed + 1

    assert state(infra, order_id) == ("SUCCEEDED", OrderStatus.PAID)
    assert events(infra) == (
        ["payment.started", "payment.succeeded"],
        ["order.paid", "order.payment_pending"],
    )
    assert deliver(handler, envelope) is False  # the same message: the inbox row
    assert events(infra)[1] == ["order.paid", "order.payment_pending"]
    assert (
        counted("payment_settled_total", status="succeeded", source="callback")
        == settled + 1
    )
    assert counted("payment_callback_apply_seconds_count") == timed + 1


def test_a_refusal_fails_the_payment_and_the_order(handler, pending, infra):
    order_id, transaction = pending(balance="1.00")
    assert transaction.status == "FAILED"
    failed = counted("payment_settled_total", status="failed", source="callback")

    deliver(handler, queued_callback(callback_body(transaction)))

    assert (
        counted("payment_settled_total", status="failed", source="callback")
        == failed + 1
    )

    assert state(infra, order_id) == ("FAILED", OrderStatus.PAYMENT_FAILED)
    assert events(infra) == (
        ["payment.failed", "payment.started"],
        ["order.payment_failed", "order.payment_pending"],
    )


def test_a_resent_replayed_or_reordered_callback_changes_nothing(
    handler, pending, infra
):
    order_id, transaction = pending()
    body = callback_body(transaction)
    first = queued_callback(body)
    deliver(handler, first)
    before, counts = events(infra), outcomes()

    # The same signed message queued again (a replay): the signature is known.
    replay = queued_callback(body, signed_at=int(json.loads(first.data["timestamp"])))
    assert deliver(handler, replay) is True
    # The bank sending it again later (new signature), and an older failure after it.
    later = queued_callback(body, signed_at=time.time() + 2)
    assert deliver(handler, later) is True
    failure = callback_body(transaction, status="FAILED")
    assert deliver(handler, queued_callback(failure)) is True

    assert state(infra, order_id) == ("SUCCEEDED", OrderStatus.PAID)
    assert events(infra) == before
    assert grown(counts, outcomes()) == {"replayed": 1, "stale": 2}


def test_a_bad_or_old_signature_changes_nothing(handler, pending, infra):
    order_id, transaction = pending()
    body = callback_body(transaction)
    counts = outcomes()

    assert deliver(handler, queued_callback(body, secret="not-the-bank")) is True
    old = queued_callback(body, signed_at=time.time() - 3600)
    assert deliver(handler, old) is True

    assert state(infra, order_id) == ("PENDING", OrderStatus.PAYMENT_PENDING)
    assert events(infra) == (["payment.started"], ["order.payment_pending"])
    assert grown(counts, outcomes()) == {"bad_signature": 2}


def test_an_unknown_transaction_or_a_wrong_amount_changes_nothing(
    handler, pending, infra
):
    order_id, transaction = pending()
    body = json.loads(callback_body(transaction))
    wrong_amount = {**body, "amount": "0.01"}
    unknown = {**body, "reference": str(uuid.uuid4())}
    not_json = b"{not json"
    counts = outcomes()

    for document in (wrong_amount, unknown):
        envelope = queued_callback(json.dumps(document).encode())
        assert deliver(handler, envelope) is True
    assert (
        deliver(handler, queued_callback(not_json, transaction_id=str(transaction.id)))
        is True
    )

    assert state(infra, order_id) == ("PENDING", OrderStatus.PAYMENT_PENDING)
    assert events(infra) == (["payment.started"], ["order.payment_pending"])
    assert grown(counts, outcomes()) == {"mismatch": 1, "unknown": 1, "malformed": 1}


def test_the_inbox_row_and_the_signature_are_kept_in_the_payment_branch(
    handler, pending, infra
):
    _, transaction = pending()
    envelope = queued_callback(callback_body(transaction))

    deliver(handler, envelope)

    with infra.engine("payment").connect() as conn:
        inbox = conn.scalar(
            sa.text("SELECT count(*) FROM inbox_events WHERE event_id = :id"),
            {"id": envelope.id},
        )
        seen = conn.scalar(sa.text("SELECT count(*) FROM seen_signatures"))
    assert (inbox, seen) == (1, 1)
