"""The order-event handlers and the worker's wiring (handlers called directly)."""

import uuid

import pytest

from apps.storage import services
from apps.storage.consumers import CONSUMERS, confirm_sale, return_stock
from apps.storage.errors import IllegalTransitionError
from apps.storage.models import Product
from apps.storage.services import StockLine
from apps.storage.settings import StorageSettings
from apps.storage.worker import build_worker
from clients.events import ORDERS_EVENTS, OrderCancelled, OrderExpired, OrderPaid
from tests.factories.events import order_cancelled, order_expired, order_paid
from tests.factories.storage import ProductFactory


def stock(session, product):
    session.expire_all()
    row = session.get(Product, product.id)
    return row.quantity, row.reserved, row.sold


def reserved_order(session, product, n):
    order_id = uuid.uuid4()
    services.reserve_stock(session, order_id=order_id, lines=[StockLine(product.id, n)])
    return order_id


def test_the_table_maps_each_order_event_to_its_handler():
    assert {
        OrderPaid: confirm_sale,
        OrderCancelled: return_stock,
        OrderExpired: return_stock,
    } == CONSUMERS


def test_order_paid_sells_the_reservation_and_a_repeat_changes_nothing(session):
    product = ProductFactory(quantity=5)
    order_id = reserved_order(session, product, 2)
    for _ in range(2):
        confirm_sale(session, order_paid(order_id))
        assert stock(session, product) == (3, 0, 2)


@pytest.mark.parametrize("kind", [OrderCancelled, OrderExpired])
def test_cancelled_or_expired_orders_give_their_stock_back(session, kind):
    product = ProductFactory(quantity=5)
    order_id = reserved_order(session, product, 4)
    for _ in range(2):
        return_stock(session, kind(order_id=str(order_id), items=()))
        assert stock(session, product) == (5, 0, 0)


def test_releasing_an_order_without_a_reservation_is_a_no_op(session):
    return_stock(session, order_expired(uuid.uuid4()))


def test_paid_after_cancelled_is_refused(session):
    product = ProductFactory(quantity=5)
    order_id = reserved_order(session, product, 1)
    return_stock(session, order_cancelled(order_id))
    with pytest.raises(IllegalTransitionError):
        confirm_sale(session, order_paid(order_id))
    assert stock(session, product) == (5, 0, 0)


def test_build_worker_consumes_the_order_events(settings_for):
    worker = build_worker(settings_for(StorageSettings))
    try:
        assert worker.consumers == CONSUMERS
        assert worker.topics == [ORDERS_EVENTS]
    finally:
        worker.engine.dispose()
