"""Cancelling an order over HTTP: who may, from which statuses, and its stock."""

import uuid

import pytest
import sqlalchemy as sa

from apps.orders.models import Order
from clients.orders import TRANSITIONS, OrderStatus
from tests.apps.orders.conftest import stock_of
from tests.factories.orders import OrderFactory
from tests.factories.storage import ProductFactory

S = OrderStatus


def cancel(client, actor, order_id):
    return client.post(f"/api/v1/orders/{order_id}/cancel", headers=actor.headers)


@pytest.mark.parametrize("status", list(S))
def test_cancel_through_the_api_follows_the_table(client, session, as_buyer, status):
    order = OrderFactory(buyer_id=as_buyer.id, status=status)
    session.commit()
    response = cancel(client, as_buyer, order.id)
    if S.CANCELLED in TRANSITIONS[status] or status == S.CANCELLED:
        assert response.status_code == 200, response.json
        assert response.json["status"] == "CANCELLED"
    else:
        assert response.status_code == 409
        assert response.json["type"] == "illegal-transition"
        session.expire_all()
        assert session.get(Order, order.id).status == status


def test_an_admin_may_cancel_anyones_unpaid_order(client, session, as_admin):
    order = OrderFactory()
    session.commit()
    assert cancel(client, as_admin, order.id).json["status"] == "CANCELLED"


def test_someone_elses_order_cannot_be_cancelled_and_stays_as_it_was(
    client, session, as_other_buyer, as_seller
):
    order = OrderFactory(lines=[{"seller_id": as_seller.id}])
    session.commit()
    for who in (as_other_buyer, as_seller):
        response = cancel(client, who, order.id)
        assert response.status_code == 404
    assert cancel(client, as_other_buyer, uuid.uuid4()).status_code == 404
    session.expire_all()
    assert session.get(Order, order.id).status == S.AWAITING_PAYMENT


def test_a_placed_then_cancelled_order_emits_order_cancelled_once(
    client, place, as_buyer, session, storage_session
):
    product = ProductFactory(quantity=4)
    placed = place(as_buyer, (product, 3)).json
    first = cancel(client, as_buyer, placed["id"])
    again = cancel(client, as_buyer, placed["id"])
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json == first.json
    types = session.scalars(
        sa.text("SELECT type FROM outbox_events ORDER BY seq")
    ).all()
    assert types == ["order.placed", "order.cancelled"]
    # The stock goes back when storage consumes order.cancelled (see test_stock_flow).
    assert stock_of(storage_session, product) == (4, 3, 0)
