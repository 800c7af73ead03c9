"""The storage worker end to end: order events from Kafka in, stock events out."""

import json
import time
import uuid

import sqlalchemy as sa
from kafka import KafkaConsumer
from sqlalchemy.orm import Session

from apps.storage import services
from apps.storage.consumers import CONSUMERS
from apps.storage.models import Product, Reservation, ReservationStatus
from apps.storage.services import StockLine
from apps.storage.settings import StorageSettings
from apps.storage.worker import build_worker
from chomik.messaging.kafka import envelope_of, make_producer
from chomik.worker import Worker
from clients.events import ORDERS_EVENTS, STOCK_EVENTS
from tests.factories.events import order_paid
from tests.factories.storage import ProductFactory

FAST_GROUP = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}


def wait_until(check, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def test_build_worker_consumes_order_events_and_runs_the_relay(settings_for):
    worker = build_worker(settings_for(StorageSettings))
    try:
        assert worker.consumers == CONSUMERS
        assert worker.topics == [ORDERS_EVENTS]
        assert worker.with_relay
    finally:
        worker.engine.dispose()


def test_order_paid_on_kafka_sells_the_stock_and_stock_committed_is_published(
    committed_db, settings_for
):
    engine = committed_db.engine("storage")
    order_id = uuid.uuid4()
    with Session(engine) as session, session.begin():
        product = ProductFactory.build(quantity=5)
        session.add(product)
        session.flush()
        product_id = product.id
        services.reserve_stock(
            session, order_id=order_id, lines=[StockLine(product_id, 2)]
        )

    envelope = envelope_of(order_paid(order_id))
    producer = make_producer(committed_db.kafka)
    for _ in range(2):  # delivered twice: applied once
        producer.send(
            ORDERS_EVENTS, key=str(order_id).encode(), value=envelope.to_json()
        )
    producer.flush(10)
    producer.close()

    worker = Worker(
        "storage", settings_for(StorageSettings), consumers=CONSUMERS,
        consumer_options=FAST_GROUP,
    )  # fmt: skip
    worker.start()
    try:

        def committed():
            with Session(engine) as session:
                status = session.scalar(
                    sa.select(Reservation.status).where(
                        Reservation.order_id == order_id
                    )
                )
                return status == ReservationStatus.COMMITTED

        wait_until(committed)
        wait_until(lambda: _unsent(engine) == 0)
    finally:
        worker.stop()
        worker.join(15)

    with Session(engine) as session:
        sold = session.get(Product, product_id)
        assert (sold.quantity, sold.reserved, sold.sold) == (3, 0, 2)
    published = _stock_events(committed_db.kafka, str(order_id), 2)
    assert published == ["stock.reserved", "stock.committed"]


def _unsent(engine):
    with engine.connect() as conn:
        return conn.scalar(
            sa.text("SELECT count(*) FROM outbox_events WHERE sent_at IS NULL")
        )


def _stock_events(bootstrap, key, count, timeout=20.0):
    """Read `stock.events` until `count` events of entity `key` arrived."""
    consumer = KafkaConsumer(
        STOCK_EVENTS, bootstrap_servers=bootstrap, group_id=f"t-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest", **FAST_GROUP,
    )  # fmt: skip
    found = []
    deadline = time.monotonic() + timeout
    try:
        while len(found) < count and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                events = (json.loads(r.value) for r in records)
                found += [e["type"] for e in events if e["key"] == key]
        return found
    finally:
        consumer.close()


def test_the_storage_worker_declares_the_topics_it_consumes_and_produces(settings_for):
    from apps.storage.worker import build_worker

    worker = build_worker(settings_for(StorageSettings))
    try:
        assert worker.topics == [ORDERS_EVENTS]
        assert worker.produces == [STOCK_EVENTS]  # pre-created with its .dlq
    finally:
        worker.engine.dispose()
