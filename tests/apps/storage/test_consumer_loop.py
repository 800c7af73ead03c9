"""Order events through the kit's consumer: one transaction with the inbox row each,
and the loop that retries a refused event, then dead-letters it and moves on."""

import threading
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from apps.storage import services
from apps.storage.consumers import CONSUMERS
from apps.storage.errors import IllegalTransitionError, InsufficientStockError
from apps.storage.models import Product, Reservation, ReservationStatus
from apps.storage.services import StockLine
from chomik.db import make_session_factory
from chomik.messaging.consuming import Consumer, event_types_of
from chomik.messaging.kafka import dlq, ensure_topics, envelope_of, make_producer
from clients.events import OrderCancelled, OrderExpired
from tests.chomik.messaging_helpers import FAST_GROUP, read_topic, wait_until
from tests.factories.events import order_cancelled, order_expired, order_paid
from tests.factories.storage import ProductFactory


@pytest.fixture
def consumer(dbs, infra):
    return Consumer(
        group_id="chomik-storage",
        bootstrap_servers=infra.kafka,
        sessions=dbs.sessions("storage"),
        consumers=CONSUMERS,
    )


def deliver(consumer, event, envelope=None):
    envelope = envelope or envelope_of(event)
    return consumer.apply(event.topic, envelope, event)


def stock(session, product):
    session.expire_all()
    row = session.get(Product, product.id)
    return row.quantity, row.reserved, row.sold


def outbox_types(session, order_id):
    return session.scalars(
        sa.text("SELECT type FROM outbox_events WHERE key = :key ORDER BY seq"),
        {"key": str(order_id)},
    ).all()


def reserved_order(session, product, n):
    order_id = uuid.uuid4()
    services.reserve_stock(session, order_id=order_id, lines=[StockLine(product.id, n)])
    session.flush()
    return order_id


def test_order_paid_sells_the_reservation_once_even_when_delivered_twice(
    consumer, session
):
    product = ProductFactory(quantity=5)
    order_id = reserved_order(session, product, 2)
    event = order_paid(order_id)
    envelope = envelope_of(event)
    assert deliver(consumer, event, envelope) is True
    assert deliver(consumer, event, envelope) is False  # the same event again
    assert stock(session, product) == (3, 0, 2)
    assert outbox_types(session, order_id) == ["stock.reserved", "stock.committed"]


def test_a_second_paid_event_with_a_new_id_changes_nothing_either(consumer, session):
    product = ProductFactory(quantity=5)
    order_id = reserved_order(session, product, 2)
    for _ in range(2):
        assert deliver(consumer, order_paid(order_id)) is True
    assert stock(session, product) == (3, 0, 2)
    assert outbox_types(session, order_id) == ["stock.reserved", "stock.committed"]


@pytest.mark.parametrize("kind", [OrderCancelled, OrderExpired])
def test_cancelled_or_expired_orders_give_their_stock_back(consumer, session, kind):
    product = ProductFactory(quantity=5)
    order_id = reserved_order(session, product, 4)
    event = kind(order_id=str(order_id), items=())
    envelope = envelope_of(event)
    assert deliver(consumer, event, envelope) is True
    assert deliver(consumer, event, envelope) is False
    assert stock(session, product) == (5, 0, 0)
    assert outbox_types(session, order_id) == ["stock.reserved", "stock.released"]


def test_releasing_an_order_without_a_reservation_emits_nothing_and_bars_its_reserve(
    consumer, session
):
    product = ProductFactory(quantity=5)
    order_id = uuid.uuid4()
    assert deliver(consumer, order_expired(order_id)) is True
    assert outbox_types(session, order_id) == []
    # The release overtook the reserve: the late reserve must not hold stock.
    with pytest.raises(IllegalTransitionError):
        services.reserve_stock(
            session, order_id=order_id, lines=[StockLine(product.id, 1)]
        )
    assert stock(session, product) == (5, 0, 0)


def test_paid_after_release_is_refused_and_rolled_back_with_its_inbox_row(
    consumer, session
):
    product = ProductFactory(quantity=5)
    order_id = reserved_order(session, product, 1)
    deliver(consumer, order_cancelled(order_id))
    event = order_paid(order_id)
    envelope = envelope_of(event)
    with pytest.raises(IllegalTransitionError):
        deliver(consumer, event, envelope)
    inbox = session.scalar(
        sa.text("SELECT count(*) FROM inbox_events WHERE event_id = :id"),
        {"id": envelope.id},
    )
    assert inbox == 0  # so the loop retries it, then dead-letters it
    assert stock(session, product) == (5, 0, 0)


def test_every_stock_change_is_in_the_outbox_and_failures_emit_nothing(session):
    product = ProductFactory(quantity=1)
    order_id = reserved_order(session, product, 1)
    savepoint = session.begin_nested()
    with pytest.raises(InsufficientStockError):
        services.reserve_stock(
            session, order_id=uuid.uuid4(), lines=[StockLine(product.id, 1)]
        )
    # Looked at before the rollback, which would hide anything it had written.
    assert session.scalar(sa.text("SELECT count(*) FROM outbox_events")) == 1
    savepoint.rollback()
    services.release_stock(session, order_id=order_id)
    services.release_stock(session, order_id=order_id)  # a repeat emits nothing
    rows = session.execute(
        sa.text("SELECT type, topic FROM outbox_events ORDER BY seq")
    ).all()
    assert [tuple(r) for r in rows] == [
        ("stock.reserved", "stock.events"),
        ("stock.released", "stock.events"),
    ]


def test_the_loop_dead_letters_a_paid_event_for_a_released_order_and_moves_on(
    committed_db,
):
    engine = committed_db.engine("storage")
    released, reserved = uuid.uuid4(), uuid.uuid4()
    with Session(engine) as session, session.begin():
        product = ProductFactory.build(quantity=5)
        session.add(product)
        session.flush()
        product_id = product.id
        for order_id in (released, reserved):
            services.reserve_stock(
                session, order_id=order_id, lines=[StockLine(product_id, 1)]
            )
        services.release_stock(session, order_id=released)
    # A topic of this test only: the handlers of the storage table, keyed by type.
    topic = f"test.storage.{uuid.uuid4().hex[:8]}"
    ensure_topics(committed_db.kafka, [topic], partitions=1)
    poison = envelope_of(order_paid(released))
    producer = make_producer(committed_db.kafka)
    for envelope in (poison, envelope_of(order_paid(reserved))):
        producer.send(topic, key=envelope.key.encode(), value=envelope.to_json())
    producer.flush(10)
    producer.close()

    consumer = Consumer(
        group_id=f"test-storage-{uuid.uuid4().hex[:6]}",
        bootstrap_servers=committed_db.kafka,
        sessions=make_session_factory(engine),
        consumers={key.type: handler for key, handler in CONSUMERS.items()},
        event_types=event_types_of(CONSUMERS),
        topics=[topic],
        consumer_options=FAST_GROUP,
    )
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,))
    thread.start()
    try:
        wait_until(lambda: status(engine, reserved) == ReservationStatus.COMMITTED, 30)
    finally:
        stop.set()
        thread.join(15)
    assert not thread.is_alive()

    dead = read_topic(committed_db.kafka, dlq(topic))
    assert [record.value for record in dead] == [poison.to_json()]
    headers = dict(dead[0].headers)
    assert headers["dlq.error_type"] == b"IllegalTransitionError"
    assert int(headers["dlq.attempts"]) > 1  # retried before it was given up
    assert status(engine, released) == ReservationStatus.RELEASED
    with Session(engine) as session:
        row = session.get(Product, product_id)
        assert (row.quantity, row.reserved, row.sold) == (4, 0, 1)


def status(engine, order_id):
    with Session(engine) as session:
        return session.scalar(
            sa.select(Reservation.status).where(Reservation.order_id == order_id)
        )
