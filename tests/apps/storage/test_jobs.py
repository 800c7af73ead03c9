"""The storage worker's jobs: finished reservations are pruned after their retention."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from apps.storage import services
from apps.storage.jobs import JOBS
from apps.storage.models import Product, Reservation, ReservationItem
from apps.storage.services import StockLine
from apps.storage.settings import StorageSettings
from apps.storage.worker import build_worker
from chomik.jobs import JobContext
from tests.factories.storage import ProductFactory


def age(session, order_id, days):
    session.execute(
        sa.update(Reservation)
        .where(Reservation.order_id == order_id)
        .values(updated_at=sa.func.now() - sa.func.make_interval(0, 0, 0, days))
    )


def test_finished_reservations_go_after_the_retention_and_open_ones_stay(
    dbs, session, settings_for
):
    product = ProductFactory(quantity=10)
    line = [StockLine(product.id, 2)]
    orders = {name: uuid.uuid4() for name in
              ("released", "committed", "marker", "recent", "open")}  # fmt: skip
    for name in ("released", "committed", "recent", "open"):
        services.reserve_stock(session, order_id=orders[name], lines=line)
    services.release_stock(session, order_id=orders["released"])
    services.commit_stock(session, order_id=orders["committed"])
    services.release_stock(session, order_id=orders["marker"])  # before any reserve
    services.release_stock(session, order_id=orders["recent"])
    for name in ("released", "committed", "marker", "open"):
        age(session, orders[name], days=31)
    age(session, orders["recent"], days=29)
    session.commit()
    settings = settings_for(StorageSettings, reservation_retention=30 * 86400)
    (job,) = [j for j in JOBS if j.name == "prune_reservations"]

    assert job.func(JobContext(settings, dbs.sessions("storage"), "st-test")) == 3

    left = set(session.scalars(sa.select(Reservation.order_id)))
    assert left == {orders["recent"], orders["open"]}
    items = session.scalars(sa.select(ReservationItem.reservation_id)).all()
    assert len(items) == 2, "the pruned reservations' lines went with them"
    stock = session.execute(
        sa.select(Product.quantity, Product.reserved, Product.sold).where(
            Product.id == product.id
        )
    ).one()
    assert tuple(stock) == (8, 2, 2), "pruning moves no stock"


def test_the_storage_worker_runs_the_prune(settings_for):
    worker = build_worker(settings_for(StorageSettings))
    try:
        assert "prune_reservations" in {job.name for job in worker.jobs}
    finally:
        worker.engine.dispose()
