"""Order events through the kit's consumer step: one transaction with the inbox row."""

import uuid

import pytest
import sqlalchemy as sa

from apps.storage import services
from apps.storage.consumers import CONSUMERS
from apps.storage.errors import IllegalTransitionError, InsufficientStockError
from apps.storage.models import Product
from apps.storage.services import StockLine
from chomik.messaging.consuming import Consumer
from chomik.messaging.kafka import envelope_of
from clients.events import OrderCancelled, OrderExpired
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


def test_releasing_an_order_without_a_reservation_is_a_no_op(consumer, session):
    order_id = uuid.uuid4()
    assert deliver(consumer, order_expired(order_id)) is True
    assert outbox_types(session, order_id) == []


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
