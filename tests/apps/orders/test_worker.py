"""The orders worker: its table of consumers and jobs, and events from Kafka in."""

import time
import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Session

from apps.orders.consumers import CONSUMERS, mark_delivered, mark_paid, mark_shipped
from apps.orders.jobs import JOBS
from apps.orders.models import Order
from apps.orders.settings import OrdersSettings
from apps.orders.worker import build_worker
from chomik.apps import app_spec
from chomik.messaging.kafka import envelope_of, make_producer
from chomik.worker import Worker
from clients.events import (
    DELIVERY_EVENTS,
    PAYMENTS_EVENTS,
    PaymentSucceeded,
    ShipmentDelivered,
    ShipmentInTransit,
)
from clients.orders import OrderStatus
from tests.factories.orders import OrderFactory

FAST_GROUP = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}


def test_the_worker_consumes_payment_and_shipment_events_and_runs_both_jobs(
    settings_for,
):
    assert {
        PaymentSucceeded: mark_paid,
        ShipmentInTransit: mark_shipped,
        ShipmentDelivered: mark_delivered,
    } == CONSUMERS
    worker = build_worker(settings_for(OrdersSettings))
    try:
        assert worker.topics == sorted([PAYMENTS_EVENTS, DELIVERY_EVENTS])
        assert worker.with_relay
        names = {job.name for job in worker.jobs}
        assert {
            "expire_due_orders", "release_abandoned_placements",
            "prune_placement_attempts",
        } <= names  # fmt: skip
        assert all(job in worker.jobs for job in JOBS)
    finally:
        worker.engine.dispose()
    assert app_spec("orders").worker_replicas == 2


def send(bootstrap, event):
    producer = make_producer(bootstrap)
    envelope = envelope_of(event)
    for _ in range(2):
        producer.send(event.topic, key=event.key.encode(), value=envelope.to_json())
    producer.flush(10)
    producer.close()


def wait_for(engine, order_id, status, timeout=45):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with Session(engine) as s:
            if s.get(Order, order_id).status == status:
                return
        time.sleep(0.2)
    raise AssertionError(f"order never became {status}")


def test_events_from_kafka_carry_an_order_to_delivered(committed_db, settings_for):
    engine = committed_db.engine("orders")
    order = OrderFactory.build(status=OrderStatus.PAYMENT_PENDING)
    with Session(engine, expire_on_commit=False) as s, s.begin():
        s.add(order)
    worker = Worker(  # a group of its own: no wait for members of earlier tests
        f"orders-{uuid.uuid4().hex[:6]}", settings_for(OrdersSettings),
        consumers=CONSUMERS, relay=False,
        consumer_options=FAST_GROUP,
    )  # fmt: skip
    worker.start()
    try:
        # Payment first (as in the purchase, delivery ships paid orders only),
        # then the carrier's steps; each event is delivered twice.
        send(
            committed_db.kafka,
            PaymentSucceeded(str(uuid.uuid4()), str(order.id), order.total),
        )
        wait_for(engine, order.id, OrderStatus.PAID)
        send(committed_db.kafka, ShipmentInTransit(str(uuid.uuid4()), str(order.id)))
        send(committed_db.kafka, ShipmentDelivered(str(uuid.uuid4()), str(order.id)))
        wait_for(engine, order.id, OrderStatus.DELIVERED)
    finally:
        worker.stop()
        worker.join(15)
    with Session(engine) as s:
        assert s.get(Order, order.id).status == OrderStatus.DELIVERED
        moves = (
            s.execute(
                sa.text(
                    "SELECT to_status FROM order_status_history WHERE order_id = :id"
                    " ORDER BY id"
                ),
                {"id": order.id},
            )
            .scalars()
            .all()
        )
    assert moves == ["PAID", "SHIPPED", "DELIVERED"]
