"""Expiry on two real orders worker processes, one SIGKILLed in the middle of a
batch: each due order is expired exactly once, none is missed, the stock is back."""

import signal
import time
import uuid
from collections import Counter

import sqlalchemy as sa
from sqlalchemy.orm import Session

from apps.orders.models import Order, OrderStatusChange
from apps.storage import services as storage_services
from apps.storage.consumers import CONSUMERS as STORAGE_CONSUMERS
from apps.storage.models import Product, Reservation, ReservationStatus
from apps.storage.settings import StorageSettings
from chomik.worker import Worker
from clients.orders import OrderStatus
from tests.chomik.messaging_helpers import spawn, wait_or_kill, wait_until
from tests.factories.orders import OrderFactory
from tests.factories.storage import ProductFactory

ORDERS, PRODUCTS, BATCH = 300, 3, 40
FAST_GROUP = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}


def seed(committed_db):
    """ORDERS due orders, each holding one reserved unit of one of PRODUCTS."""
    products = [ProductFactory.build(quantity=ORDERS) for _ in range(PRODUCTS)]
    orders = []
    with Session(committed_db.engine("storage")) as s, s.begin():
        s.add_all(products)
        s.flush()
        for n in range(ORDERS):
            product = products[n % PRODUCTS]
            order = OrderFactory.build(lines=[{"product_id": product.id}])
            orders.append(order)
            storage_services.reserve_stock(
                s, order_id=order.id,
                lines=[storage_services.StockLine(product.id, 1)],
            )  # fmt: skip
        product_ids = [p.id for p in products]
    with Session(committed_db.engine("orders")) as s, s.begin():
        s.add_all(orders)
        s.flush()
        s.execute(
            sa.update(Order).values(
                expires_at=sa.func.now() - sa.text("interval '1 second'"),
                next_check_at=sa.func.now() - sa.text("interval '1 second'"),
            )
        )
    return product_ids


def scalar(engine, sql, **params):
    with engine.connect() as conn:
        return conn.scalar(sa.text(sql), params)


def test_two_workers_one_killed_mid_batch_expire_each_order_once(
    committed_db, settings_for, tmp_path
):
    product_ids = seed(committed_db)
    engine = committed_db.engine("orders")
    env = {
        "DATABASE_URL": committed_db.urls["orders"],
        "KAFKA_BOOTSTRAP_SERVERS": committed_db.kafka,
        "TEST_BATCH": str(BATCH),
        "TEST_LEASE": "3",
    }
    claimed = "SELECT count(*) FROM orders WHERE claim_token IS NOT NULL"

    def worker(name):
        return spawn(
            "tests.apps.orders.worker_child",
            {**env, "SCHEDULER_REPLICA_ID": f"{name}-{uuid.uuid4().hex[:6]}"},
            tmp_path / f"{name}.log",
        )  # fmt: skip

    # Hold every history insert: a replica that claimed a batch stops inside it.
    blocker = engine.connect()
    blocker.begin()
    blocker.execute(sa.text("LOCK TABLE order_status_history IN EXCLUSIVE MODE"))
    victim = worker("victim")
    survivor = None
    try:
        wait_until(lambda: scalar(engine, claimed) == BATCH, 30, 0.05)
        with engine.connect() as conn:
            victims_rows = set(
                conn.execute(
                    sa.text("SELECT id FROM orders WHERE claim_token IS NOT NULL")
                ).scalars()
            )
        survivor = worker("survivor")
        wait_until(lambda: scalar(engine, claimed) == 2 * BATCH, 30, 0.05)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        unfinished = scalar(
            engine,
            "SELECT count(*) FROM orders WHERE status = 'AWAITING_PAYMENT'"
            " AND id = ANY(:ids)",
            ids=list(victims_rows),
        )
        assert unfinished == BATCH, "killed in the middle of its batch"
        blocker.rollback()  # the survivor goes on; the victim's batch stays claimed
        blocker.close()

        expired = "SELECT count(*) FROM orders WHERE status = 'EXPIRED'"
        wait_until(lambda: scalar(engine, expired) == ORDERS, 60, 0.2)
        time.sleep(0.5)  # a late second expiry would show up now
        with Session(engine) as s:
            moves = Counter(
                s.scalars(
                    sa.select(OrderStatusChange.order_id).where(
                        OrderStatusChange.to_status == OrderStatus.EXPIRED
                    )
                )
            )
            events = Counter(
                s.scalars(
                    sa.text(
                        "SELECT key FROM outbox_events WHERE type = 'order.expired'"
                    )
                )
            )
        assert len(moves) == ORDERS
        assert set(moves.values()) == {1}
        assert len(events) == ORDERS
        assert set(events.values()) == {1}

        # The survivor's relay publishes order.expired; storage gives the stock back.
        storage = Worker(
            "storage",
            settings_for(StorageSettings, scheduler_replica_id=f"s-{uuid.uuid4()}"),
            consumers=STORAGE_CONSUMERS,
            consumer_options=FAST_GROUP,
        )  # fmt: skip
        storage.start()
        released = "SELECT count(*) FROM reservations WHERE status = :status"
        try:
            wait_until(
                lambda: scalar(
                    committed_db.engine("storage"), released,
                    status=ReservationStatus.RELEASED.value,
                ) == ORDERS,
                90, 0.5,
            )  # fmt: skip
        finally:
            storage.stop()
            storage.join(15)
    finally:
        for process in (victim, survivor):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        code = wait_or_kill(survivor) if survivor is not None else None
        if not blocker.closed:
            blocker.close()
    assert code == 0, (tmp_path / "survivor.log").read_text()[-3000:]
    with Session(committed_db.engine("storage")) as s:
        for product_id in product_ids:
            row = s.get(Product, product_id)
            assert (row.quantity, row.reserved) == (ORDERS, 0)
        assert s.scalar(sa.select(sa.func.count()).select_from(Reservation)) == ORDERS
