"""`move_order`, the one SQL that moves an order, in the caller's transaction."""

import json
import uuid
from decimal import Decimal

import pytest
import sqlalchemy as sa

from apps.orders import models
from apps.orders.models import Order, OrderStatusChange
from clients.orders import (
    EXPIRABLE,
    TRANSITIONS,
    IllegalTransitionError,
    OrderStatus,
    move_order,
)
from clients.orders import moves as contract
from tests.factories.orders import OrderFactory
from tests.metrics import counted

S = OrderStatus
LEGAL = sorted((a, b) for a, targets in TRANSITIONS.items() for b in targets)
ILLEGAL = sorted((a, b) for a in S for b in S if b not in TRANSITIONS[a])


def outbox(session):
    rows = session.execute(
        sa.text("SELECT topic, key, type, payload FROM outbox_events ORDER BY seq")
    ).all()
    return [
        (r.topic, r.key, r.type, json.loads(bytes(r.payload))["data"]) for r in rows
    ]


def history(session, order_id):
    return [
        (h.from_status, h.to_status, h.reason)
        for h in session.scalars(
            sa.select(OrderStatusChange)
            .where(OrderStatusChange.order_id == order_id)
            .order_by(OrderStatusChange.id)
        )
    ]


@pytest.mark.parametrize(("current", "target"), LEGAL)
def test_every_legal_move_updates_the_row_writes_history_and_the_event(
    session, current, target
):
    order = OrderFactory(status=current, lines=[{"quantity": 2}])
    session.commit()
    payment = "pay-1" if target == S.PAYMENT_FAILED else None
    labels = {"from_status": current.value, "to_status": target.value}
    before = counted("order_transitions_total", **labels)
    moved = move_order(session, order.id, to=target, reason="test", payment_id=payment)
    assert (moved.from_status, moved.to_status) == (current, target)
    assert counted("order_transitions_total", **labels) == before + 1
    session.expire_all()
    row = session.get(Order, order.id)
    assert row.status == target
    assert row.next_check_at == (row.expires_at if target in EXPIRABLE else None)
    assert history(session, order.id) == [(current, target, "test")]
    ((topic, key, kind, data),) = outbox(session)
    assert (topic, key, kind) == (
        "orders.events",
        str(order.id),
        f"order.{target.lower()}",
    )
    assert data["order_id"] == str(order.id)
    assert moved.event.type == kind


@pytest.mark.parametrize(("current", "target"), ILLEGAL)
def test_every_illegal_move_is_refused_and_writes_nothing(session, current, target):
    order = OrderFactory(status=current)
    session.commit()
    with pytest.raises(IllegalTransitionError) as caught:
        move_order(session, order.id, to=target, payment_id="pay-1")
    assert caught.value.status == 409
    assert caught.value.extra["status_from"] == current.value
    session.expire_all()
    assert session.get(Order, order.id).status == current
    assert history(session, order.id) == []
    assert outbox(session) == []


def test_a_refused_move_leaves_the_callers_transaction_usable_and_its_work_intact(
    session,
):
    paid = OrderFactory(status=S.PAID)
    other = OrderFactory(status=S.AWAITING_PAYMENT)
    session.commit()
    move_order(session, other.id, to=S.PAYMENT_PENDING)  # the caller's own work
    with pytest.raises(IllegalTransitionError):
        move_order(session, paid.id, to=S.PAYMENT_PENDING)
    assert session.in_transaction()
    session.commit()
    session.expire_all()
    assert session.get(Order, other.id).status == S.PAYMENT_PENDING
    assert session.get(Order, paid.id).status == S.PAID
    assert [t for _, _, t, _ in outbox(session)] == ["order.payment_pending"]


def test_a_move_whose_event_would_be_incomplete_is_refused_before_any_write(session):
    order = OrderFactory(status=S.PAYMENT_PENDING)
    session.commit()
    with pytest.raises(TypeError, match="payment_id"):
        move_order(session, order.id, to=S.PAYMENT_FAILED)
    session.expire_all()
    assert session.get(Order, order.id).status == S.PAYMENT_PENDING
    assert history(session, order.id) == []
    assert outbox(session) == []


def test_an_unknown_order_is_an_illegal_transition(session):
    with pytest.raises(IllegalTransitionError):
        move_order(session, uuid.uuid4(), to=S.PAID)
    assert outbox(session) == []


def test_order_paid_carries_what_storage_and_delivery_need(session):
    order = OrderFactory(
        status=S.PAYMENT_PENDING,
        lines=[{"quantity": 2, "unit_price": Decimal("10.00")}, {"quantity": 1}],
    )
    session.commit()
    move_order(session, order.id, to=S.PAID)
    ((_, _, _, data),) = outbox(session)
    assert data["buyer_id"] == str(order.buyer_id)
    assert data["address_id"] == str(order.address_id)
    assert sorted(data["items"], key=lambda i: i["product_id"]) == sorted(
        (
            {"product_id": str(i.product_id), "quantity": i.quantity}
            for i in order.items
        ),
        key=lambda i: i["product_id"],
    )


def test_an_order_paid_again_after_a_failure_is_due_for_expiry_again(session):
    order = OrderFactory(status=S.AWAITING_PAYMENT)
    session.commit()
    move_order(session, order.id, to=S.PAYMENT_PENDING)
    session.expire_all()
    assert session.get(Order, order.id).next_check_at is None
    move_order(session, order.id, to=S.PAYMENT_FAILED, payment_id="pay-1")
    session.expire_all()
    row = session.get(Order, order.id)
    assert row.next_check_at == row.expires_at


def _shape(table):
    return {
        c.name: (type(c.type).__name__, c.nullable, c.primary_key)
        for c in table.columns
    }


def test_the_orders_models_and_move_order_use_one_table_definition():
    """Fails if the models and what `move_order` writes ever disagree."""
    written = contract._TABLES
    mapped = models.TABLES
    assert Order.__table__ is mapped.orders
    assert models.OrderItem.__table__ is mapped.items
    assert OrderStatusChange.__table__ is mapped.history
    for name in ("orders", "items", "history"):
        assert _shape(getattr(written, name)) == _shape(getattr(mapped, name)), name
        assert getattr(written, name).name == getattr(mapped, name).name
    # Every column `move_order` sets or reads exists, typed alike, in the model.
    for column in ("status", "updated_at", "next_check_at", "expires_at"):
        assert column in Order.__table__.c
