"""No stock leaks, end to end: a cancelled order, an expired one and a placement
that died after reserving give their stock back through the orders jobs and relay,
the broker and the real storage consumer."""

import dataclasses
import time
import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Session

from apps.orders import create_app
from apps.orders.jobs import JOBS
from apps.orders.models import Order, PlacementAttempt
from apps.orders.services import Ports
from apps.storage import create_app as create_storage_app
from apps.storage.consumers import CONSUMERS as STORAGE_CONSUMERS
from apps.storage.models import Product, Reservation, ReservationStatus
from apps.storage.settings import StorageSettings
from chomik.web import runtime
from chomik.worker import Worker
from clients.storage import StockItem
from tests.apps.orders.conftest import FakeAddresses, storage_client
from tests.conftest import auth
from tests.factories.storage import ProductFactory

FAST_GROUP = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}


def wait_until(check, timeout=45.0):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.2)


def test_cancel_expiry_and_an_abandoned_placement_give_stock_back_via_the_broker(
    committed_db, settings, settings_for, make_token
):
    storage_engine = committed_db.engine("storage")
    product = ProductFactory.build(quantity=10)
    with Session(storage_engine) as s, s.begin():
        s.add(product)
        s.flush()
        s.expunge(product)
    storage_app = create_storage_app(settings_for(StorageSettings))
    addresses = FakeAddresses()
    orders_app = create_app(
        settings, ports=Ports(storage_client(storage_app), addresses)
    )
    buyer = uuid.uuid4()
    headers = auth(make_token(str(buyer), "buyer"))
    body = {
        "items": [{"product_id": str(product.id), "quantity": 3}],
        "address_id": str(addresses.add(buyer)),
    }
    client = orders_app.test_client()
    placed = [
        client.post(
            "/api/v1/orders", json=body, headers={**headers, "Idempotency-Key": k}
        )
        for k in ("cancel-me", "let-me-expire", "keep-me")
    ]
    assert [r.status_code for r in placed] == [201, 201, 201]
    cancelled, expiring, kept = (uuid.UUID(r.json["id"]) for r in placed)
    assert (
        client.post(f"/api/v1/orders/{cancelled}/cancel", headers=headers).json[
            "status"
        ]
        == "CANCELLED"
    )
    orders_engine = committed_db.engine("orders")
    with orders_engine.begin() as conn:
        conn.execute(
            sa.update(Order)
            .where(Order.id == expiring)
            .values(expires_at=sa.func.now(), next_check_at=sa.func.now())
        )

    # A placement that reserved and died before storing its order, now overdue.
    abandoned = uuid.uuid4()
    storage_client(storage_app).reserve(abandoned, [StockItem(product.id, 1)])
    with orders_engine.begin() as conn:
        conn.execute(
            sa.insert(PlacementAttempt).values(
                order_id=abandoned, buyer_id=buyer, next_check_at=sa.func.now()
            )
        )

    fast = [dataclasses.replace(job, seconds=0.3) for job in JOBS]
    orders_worker = Worker("orders", settings, jobs=fast)
    storage_worker = Worker(  # a replica id of its own: schedulers are per replica
        "storage",
        settings_for(StorageSettings, scheduler_replica_id=f"storage-{uuid.uuid4()}"),
        consumers=STORAGE_CONSUMERS,
        consumer_options=FAST_GROUP,
    )  # fmt: skip
    orders_worker.start()
    storage_worker.start()
    try:

        def reservation(order_id):
            with Session(storage_engine) as s:
                return s.scalar(
                    sa.select(Reservation.status).where(
                        Reservation.order_id == order_id
                    )
                )

        wait_until(
            lambda: (
                reservation(cancelled)
                == reservation(expiring)
                == reservation(abandoned)
                == ReservationStatus.RELEASED
            )
        )
    finally:
        orders_worker.stop()
        storage_worker.stop()
        orders_worker.join(15)
        storage_worker.join(15)
        runtime(orders_app).engine.dispose()
        runtime(storage_app).engine.dispose()

    with Session(orders_engine) as s:
        assert s.get(Order, expiring).status == "EXPIRED"
        assert s.get(Order, kept).status == "AWAITING_PAYMENT"
    assert reservation(kept) == ReservationStatus.RESERVED
    with Session(storage_engine) as s:
        row = s.get(Product, product.id)
        assert (row.quantity, row.reserved) == (10, 3)
