"""The events that carry an order forward: idempotent and monotonic."""

import uuid

import pytest
import sqlalchemy as sa

from apps.orders.consumers import mark_delivered, mark_paid, mark_shipped
from apps.orders.models import Order, OrderStatusChange
from clients.events import PaymentSucceeded, ShipmentDelivered, ShipmentInTransit
from clients.orders import IllegalTransitionError, OrderStatus, move_order
from tests.factories.orders import OrderFactory

S = OrderStatus


def paid(order):
    return mark_paid, PaymentSucceeded(str(uuid.uuid4()), str(order.id), order.total)


def in_transit(order):
    return mark_shipped, ShipmentInTransit(str(uuid.uuid4()), str(order.id))


def delivered(order):
    return mark_delivered, ShipmentDelivered(str(uuid.uuid4()), str(order.id))


def status_of(session, order):
    session.expire_all()
    return session.get(Order, order.id).status


def moves(session, order):
    return session.scalar(
        sa.select(sa.func.count())
        .select_from(OrderStatusChange)
        .where(OrderStatusChange.order_id == order.id)
    )


@pytest.mark.parametrize(
    ("start", "event", "end"),
    [
        (S.PAYMENT_PENDING, paid, S.PAID),
        (S.PAID, in_transit, S.SHIPPED),
        (S.SHIPPED, delivered, S.DELIVERED),
        (S.PAID, delivered, S.DELIVERED),  # "in transit" never came
    ],
)
def test_an_event_moves_the_order_forward_once(session, start, event, end):
    order = OrderFactory(status=start)
    handler, message = event(order)
    handler(session, message)
    handler(session, message)  # redelivered: no second move
    assert status_of(session, order) == end
    assert moves(session, order) == 1


@pytest.mark.parametrize(
    ("start", "event"),
    [
        (S.PAID, paid),  # payment's two-phase transaction moved it already
        (S.SHIPPED, paid),
        (S.DELIVERED, paid),
        (S.SHIPPED, in_transit),
        (S.DELIVERED, in_transit),  # a stale "in transit" after delivery
        (S.DELIVERED, delivered),
    ],
)
def test_a_stale_or_repeated_event_never_moves_an_order_back(session, start, event):
    order = OrderFactory(status=start)
    handler, message = event(order)
    handler(session, message)
    assert status_of(session, order) == start
    assert moves(session, order) == 0


@pytest.mark.parametrize(
    ("start", "event"),
    [(S.CANCELLED, paid), (S.EXPIRED, paid), (S.AWAITING_PAYMENT, in_transit)],
)
def test_an_event_the_table_refuses_is_an_error_not_a_silent_write(
    session, start, event
):
    order = OrderFactory(status=start)
    handler, message = event(order)
    with pytest.raises(IllegalTransitionError):
        handler(session, message)
    assert status_of(session, order) == start


def test_payment_succeeded_after_payments_own_move_is_a_no_op(session):
    order = OrderFactory(status=S.PAYMENT_PENDING)
    move_order(session, order.id, to=S.PAID)  # payment's two-phase branch
    handler, message = paid(order)
    handler(session, message)
    assert status_of(session, order) == S.PAID
    assert moves(session, order) == 1
