"""The poller: PENDING payments checked at the bank, results applied once; expiry,
late successes refunded, by callback or found by the poller; txcoord's recovery on
every worker."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa

from apps.payment.consumers import consumers
from apps.payment.jobs import count_pending_payments, payment_jobs
from apps.payment.services.polling import LATE_CHECK_MAX, late_check
from apps.payment.worker import build_worker
from chomik.apps import app_spec
from chomik.db import make_session_factory
from chomik.jobs import JobContext
from clients.events import BANK_CALLBACKS, BankCallbackReceived
from clients.orders import OrderStatus, move_order
from tests.apps.payment.conftest import (
    away_bank_client,
    bank_transactions,
    callback_body,
    counted,
    inbox_entry,
    order_status,
    outbox_types,
    pay_at_bank,
    payments_of,
    queued_callback,
)
from tests.txcoord.conftest import leave_prepared, rollback_all_prepared


@pytest.fixture
def started(client, buyer, place_order, bank):
    def make():
        order_id = place_order(buyer.id)
        response = client.post(
            f"/api/v1/orders/{order_id}/payment", headers=buyer.headers
        )
        assert response.status_code == 201, response.json
        return order_id, bank.find_transaction(response.json["id"])

    return make


def job(ports, name):
    (found,) = [j for j in payment_jobs(ports) if j.name == name]
    return found


def poll(ports, infra, settings, name="poll_pending_payments"):
    context = JobContext(
        settings=settings,
        sessions=make_session_factory(infra.engine("payment")),
        replica_id=f"test-{uuid.uuid4().hex[:6]}",
    )
    return job(ports, name).func(context)


def watch(ports, infra, settings):
    return poll(ports, infra, settings, "watch_expired_payments")


def make_due(infra, *, age_seconds=0):
    with infra.engine("payment").begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE payments SET next_check_at = now() - interval '1 second',"
                " created_at = now() - make_interval(secs => :age)"
            ),
            {"age": age_seconds},
        )


def test_the_poller_applies_a_result_whose_callback_never_came(
    ports, settings, started, bank, infra
):
    order_id, transaction = started()
    pay_at_bank(bank, transaction.id)
    assert poll(ports, infra, settings)["done"] == 0  # not due yet
    make_due(infra)
    before = counted("payment_bank_results_total", source="poll", outcome="applied")
    settled = counted("payment_settled_total", status="succeeded", source="poll")

    counts = poll(ports, infra, settings)

    assert counts["done"] == 1
    (payment,) = payments_of(infra, order_id)
    assert (payment.status, payment.next_check_at) == ("SUCCEEDED", None)
    assert order_status(infra, order_id) is OrderStatus.PAID
    assert (
        counted("payment_bank_results_total", source="poll", outcome="applied")
        == before + 1
    )
    assert (
        counted("payment_settled_total", status="succeeded", source="poll")
        == settled + 1
    )
    assert poll(ports, infra, settings)["done"] == 0  # never due again


def test_pending_payments_and_the_oldest_ones_age_are_gauged(
    ports, settings, started, infra
):
    started()
    started()
    make_due(infra, age_seconds=700)
    context = JobContext(settings, ports.sessions, "test-replica")
    count_pending_payments(context)
    assert counted("payment_pending") == 2
    assert 700 <= counted("payment_pending_oldest_age_seconds") < 760
    with infra.engine("payment").begin() as conn:
        conn.execute(sa.text("UPDATE payments SET status = 'SUCCEEDED'"))
    count_pending_payments(context)
    assert counted("payment_pending") == 0
    assert counted("payment_pending_oldest_age_seconds") == 0


def test_a_payment_the_bank_has_not_settled_is_checked_again_later(
    ports, settings, started, infra
):
    order_id, _ = started()
    make_due(infra)

    assert poll(ports, infra, settings)["done"] == 1

    (payment,) = payments_of(infra, order_id)
    assert payment.status == "PENDING"
    assert payment.next_check_at is not None
    assert payment.claim_token is None
    assert poll(ports, infra, settings)["done"] == 0


def test_the_callback_after_the_poller_changes_nothing(
    ports, settings, started, bank, infra
):
    order_id, transaction = started()
    pay_at_bank(bank, transaction.id)
    make_due(infra)
    poll(ports, infra, settings)
    before = outbox_types(infra, "orders")

    handler = consumers(ports)[BankCallbackReceived.type]
    envelope = queued_callback(callback_body(bank.get_transaction(transaction.id)))
    assert handler(inbox_entry(envelope), envelope) is True

    assert outbox_types(infra, "orders") == before
    assert order_status(infra, order_id) is OrderStatus.PAID


def test_a_late_success_after_the_order_expired_is_refunded_and_counted(
    ports, settings, started, bank, infra
):
    order_id, transaction = started()
    make_due(infra, age_seconds=settings.payment_ttl + 1)
    poll(ports, infra, settings)  # the bank never settled it: the payment expires
    (payment,) = payments_of(infra, order_id)
    assert payment.status == "EXPIRED"
    assert order_status(infra, order_id) is OrderStatus.PAYMENT_FAILED
    with infra.engine("orders").begin() as conn, sa.orm.Session(conn) as session:
        move_order(session, order_id, to=OrderStatus.EXPIRED, reason="test")
    pay_at_bank(bank, transaction.id)  # the customer pays too late
    refunds = counted("payment_late_refunds_total")

    handler = consumers(ports)[BankCallbackReceived.type]
    envelope = queued_callback(callback_body(bank.get_transaction(transaction.id)))
    handler(inbox_entry(envelope), envelope)

    assert bank.get_transaction(transaction.id).status == "REFUNDED"
    (payment,) = payments_of(infra, order_id)
    assert payment.status == "EXPIRED"
    assert payment.refunded_at is not None
    assert payment.next_check_at is None  # nothing left to watch
    assert order_status(infra, order_id) is OrderStatus.EXPIRED
    assert counted("payment_late_refunds_total") == refunds + 1
    # The same success again (resent by the bank) is not refunded or counted twice.
    again = queued_callback(envelope.data["body"].encode(), signed_at=1 + int(
        envelope.data["timestamp"]))  # fmt: skip
    handler(inbox_entry(again), again)
    assert counted("payment_late_refunds_total") == refunds + 1
    assert len(bank_transactions(infra)) == 1


def test_a_late_success_whose_callback_is_lost_is_refunded_by_the_poller(
    ports, settings, started, bank, infra
):
    order_id, transaction = started()
    make_due(infra, age_seconds=settings.payment_ttl + 1)
    poll(ports, infra, settings)
    (payment,) = payments_of(infra, order_id)
    assert payment.status == "EXPIRED"
    assert payment.next_check_at is not None  # still watched
    # The buyer pays the expired payment anyway; no callback reaches payment.
    pay_at_bank(bank, transaction.id)
    refunds = counted("payment_late_refunds_total")
    make_due(infra, age_seconds=settings.payment_ttl + 3600)

    assert poll(ports, infra, settings)["done"] == 0  # not the PENDING ones' job
    assert watch(ports, infra, settings)["done"] == 1

    assert bank.get_transaction(transaction.id).status == "REFUNDED"
    (payment,) = payments_of(infra, order_id)
    assert (payment.status, payment.next_check_at) == ("EXPIRED", None)
    assert payment.refunded_at is not None
    assert order_status(infra, order_id) is OrderStatus.PAYMENT_FAILED
    assert counted("payment_late_refunds_total") == refunds + 1
    assert watch(ports, infra, settings)["done"] == 0  # never due again


def test_an_expired_payment_is_watched_until_the_late_watch_ends(
    ports, settings, started, bank, infra
):
    order_id, transaction = started()
    make_due(infra, age_seconds=settings.payment_ttl + 1)
    poll(ports, infra, settings)
    make_due(infra, age_seconds=settings.payment_ttl + settings.payment_late_watch)

    assert watch(ports, infra, settings)["done"] == 1

    (payment,) = payments_of(infra, order_id)
    assert (payment.status, payment.next_check_at) == ("EXPIRED", None)
    assert bank.get_transaction(transaction.id).status == "CREATED"


def test_an_expired_payment_is_checked_less_and_less_often():
    expired = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    interval = dt.timedelta(seconds=30)
    week = 7 * 24 * 3600

    def wait(since):
        now = expired + since
        due = late_check(now, expired, interval, week)
        return None if due is None else due - now

    assert wait(dt.timedelta(seconds=1)) == interval
    assert wait(dt.timedelta(minutes=10)) == dt.timedelta(seconds=150)
    assert wait(dt.timedelta(days=1)) == LATE_CHECK_MAX
    assert wait(dt.timedelta(seconds=week - 1)) == LATE_CHECK_MAX
    assert wait(dt.timedelta(seconds=week)) is None


def test_a_bank_outage_leaves_the_payment_due_again(
    make_ports, settings, started, infra
):
    order_id, _ = started()
    make_due(infra)
    away = away_bank_client()
    errors = counted("payment_bank_errors_total", operation="get")

    counts = poll(make_ports(away), infra, settings)

    assert counts["failed"] == 1
    assert counted("payment_bank_errors_total", operation="get") == errors + 1
    (payment,) = payments_of(infra, order_id)
    assert payment.status == "PENDING"
    assert payment.claim_token is None


def prepared_gids(engine):
    with engine.connect() as conn:
        return set(
            conn.scalars(
                sa.text(
                    "SELECT gid FROM pg_prepared_xacts"
                    " WHERE database = current_database()"
                )
            )
        )


def test_every_payment_worker_recovers_at_start_and_periodically(
    make_ports, bank, settings, infra
):
    ports = make_ports(bank, txcoord_timeout=0.0)
    orders = infra.engine("orders")
    orphans = [f"{ports.coordinator.prefix}:{uuid.uuid4().hex}:orders" for _ in "ab"]
    leave_prepared(orders, orphans[0])
    worker = build_worker(ports.settings, ports=ports)
    try:
        assert worker.topics == [BANK_CALLBACKS]
        names = {j.name for j in worker.jobs}
        assert {"poll_pending_payments", "watch_expired_payments",
                "txcoord_recovery", "prune_txcoord_decisions"} <= names  # fmt: skip
        # Started without its Kafka parts and jobs: only what start adds is run.
        worker.consumers, worker.topics, worker.jobs = {}, [], []
        worker.with_relay = False
        worker.start()
        assert orphans[0] not in prepared_gids(orders)  # recovered at start
        leave_prepared(orders, orphans[1])
        report = job(ports, "txcoord_recovery").func(None)
        assert orphans[1] in report.rolled_back
    finally:
        worker.stop()
        worker.join(15)
        rollback_all_prepared(orders)
    assert app_spec("payment").worker_replicas == 2


def test_a_late_success_the_bank_cannot_refund_yet_is_taken_again_later(
    ports, make_ports, settings, started, bank, infra
):
    from chomik.transient import TransientError

    order_id, transaction = started()
    make_due(infra, age_seconds=settings.payment_ttl + 1)
    poll(ports, infra, settings)
    pay_at_bank(bank, transaction.id)
    envelope = queued_callback(callback_body(bank.get_transaction(transaction.id)))
    away = away_bank_client()

    with pytest.raises(TransientError):  # the consumer waits the outage out
        consumers(make_ports(away))[BankCallbackReceived.type](
            inbox_entry(envelope), envelope
        )
    (payment,) = payments_of(infra, order_id)
    assert payment.refunded_at is None
    assert bank.get_transaction(transaction.id).status == "SUCCEEDED"

    handler = consumers(ports)[BankCallbackReceived.type]
    assert handler(inbox_entry(envelope), envelope) is True  # not taken before

    assert bank.get_transaction(transaction.id).status == "REFUNDED"
    (payment,) = payments_of(infra, order_id)
    assert payment.refunded_at is not None


def test_a_payment_settled_while_the_poller_held_it_is_never_due_again(
    ports, settings, started, bank, infra, monkeypatch
):
    from apps.payment.services import polling

    order_id, transaction = started()
    make_due(infra)  # not expiring: the poller would check it again later
    asked = polling._ask_bank

    def settled_meanwhile(ports_, payment):
        answer = asked(ports_, payment)  # CREATED; then the callback comes
        pay_at_bank(bank, transaction.id)
        handler = consumers(ports)[BankCallbackReceived.type]
        envelope = queued_callback(callback_body(bank.get_transaction(transaction.id)))
        assert handler(inbox_entry(envelope), envelope) is True
        return answer

    monkeypatch.setattr(polling, "_ask_bank", settled_meanwhile)

    assert poll(ports, infra, settings)["done"] == 1

    (payment,) = payments_of(infra, order_id)
    assert (payment.status, payment.next_check_at) == ("SUCCEEDED", None)
    assert order_status(infra, order_id) is OrderStatus.PAID
