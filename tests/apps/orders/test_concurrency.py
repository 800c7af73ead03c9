"""Concurrent requests on really committed data: double taps, rival buyers, cancels."""

import threading
import uuid
from collections import Counter

import sqlalchemy as sa
from sqlalchemy.orm import Session

from apps.orders import create_app
from apps.orders.models import Order, OrderStatusChange, PlacementAttempt
from apps.orders.services import Ports
from apps.storage import create_app as create_storage_app
from apps.storage.models import Product, Reservation
from apps.storage.settings import StorageSettings
from chomik.web import runtime
from clients.orders import OrderStatus
from tests.apps.orders.conftest import FakeAddresses, storage_client
from tests.conftest import auth
from tests.factories.orders import OrderFactory
from tests.factories.storage import ProductFactory


def run_together(count, call):
    results = [None] * count
    barrier = threading.Barrier(count)

    def run(index):
        barrier.wait()
        results[index] = call(index)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_twenty_identical_requests_make_one_order_and_one_reservation(
    committed_db, settings, settings_for, make_token
):
    product = ProductFactory.build(quantity=5)
    with Session(committed_db.engine("storage")) as s, s.begin():
        s.add(product)
        s.flush()
        s.expunge(product)
    storage_app = create_storage_app(settings_for(StorageSettings))
    addresses = FakeAddresses()
    app = create_app(
        settings.replace(idempotency_wait=20.0),
        ports=Ports(storage_client(storage_app), addresses),
    )
    buyer = uuid.uuid4()
    headers = {**auth(make_token(str(buyer), "buyer")), "Idempotency-Key": "tap-tap"}
    body = {
        "items": [{"product_id": str(product.id), "quantity": 2}],
        "address_id": str(addresses.add(buyer)),
    }
    try:
        responses = run_together(
            20,
            lambda _: app.test_client().post(
                "/api/v1/orders", json=body, headers=headers
            ),
        )
    finally:
        runtime(app).engine.dispose()
        runtime(storage_app).engine.dispose()
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 1, 200: 19}
    assert len({r.json["id"] for r in responses}) == 1
    with Session(committed_db.engine("orders")) as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Order)) == 1
        assert s.scalar(sa.select(sa.func.count()).select_from(PlacementAttempt)) == 0
    with Session(committed_db.engine("storage")) as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Reservation)) == 1
        row = s.get(Product, product.id)
        assert (row.quantity, row.reserved) == (5, 2)


def test_rival_buyers_never_oversell_and_the_refused_hold_nothing(
    committed_db, settings, settings_for, make_token
):
    product = ProductFactory.build(quantity=3)
    with Session(committed_db.engine("storage")) as s, s.begin():
        s.add(product)
        s.flush()
        s.expunge(product)
    storage_app = create_storage_app(settings_for(StorageSettings))
    addresses = FakeAddresses()
    app = create_app(settings, ports=Ports(storage_client(storage_app), addresses))
    buyers = [uuid.uuid4() for _ in range(8)]
    requests = [
        (
            {**auth(make_token(str(b), "buyer")), "Idempotency-Key": uuid.uuid4().hex},
            {
                "items": [{"product_id": str(product.id), "quantity": 1}],
                "address_id": str(addresses.add(b)),
            },
        )
        for b in buyers
    ]
    try:
        responses = run_together(
            8,
            lambda i: app.test_client().post(
                "/api/v1/orders", json=requests[i][1], headers=requests[i][0]
            ),
        )
    finally:
        runtime(app).engine.dispose()
        runtime(storage_app).engine.dispose()
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 3, 409: 5}
    assert all(
        r.json["product_ids"] == [str(product.id)]
        for r in responses
        if r.status_code == 409
    )
    with Session(committed_db.engine("orders")) as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Order)) == 3
        assert s.scalar(sa.select(sa.func.count()).select_from(PlacementAttempt)) == 0
    with Session(committed_db.engine("storage")) as s:
        row = s.get(Product, product.id)
        assert (row.quantity, row.reserved) == (3, 3)


def test_parallel_cancels_of_one_order_all_answer_it_cancelled_once(
    committed_db, settings, settings_for, make_token
):
    buyer = uuid.uuid4()
    order_id = uuid.uuid4()
    with Session(committed_db.engine("orders")) as s, s.begin():
        s.add(OrderFactory.build(id=order_id, buyer_id=buyer))
    storage_app = create_storage_app(settings_for(StorageSettings))
    app = create_app(
        settings, ports=Ports(storage_client(storage_app), FakeAddresses())
    )
    headers = auth(make_token(str(buyer), "buyer"))
    try:
        responses = run_together(
            8,
            lambda _: app.test_client().post(
                f"/api/v1/orders/{order_id}/cancel", headers=headers
            ),
        )
    finally:
        runtime(app).engine.dispose()
        runtime(storage_app).engine.dispose()
    assert Counter(r.status_code for r in responses) == {200: 8}, [
        r.json for r in responses
    ]
    assert {r.json["status"] for r in responses} == {"CANCELLED"}
    with Session(committed_db.engine("orders")) as s:
        moves = s.scalars(
            sa.select(OrderStatusChange.to_status).where(
                OrderStatusChange.order_id == order_id
            )
        ).all()
        assert moves == [OrderStatus.CANCELLED]
        events = s.scalars(sa.text("SELECT type FROM outbox_events")).all()
        assert events == ["order.cancelled"]
