"""No oversell under real concurrency: many connections reserving at the same time."""

import random
import threading
import uuid
from collections import Counter

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from apps.storage import services
from apps.storage.errors import InsufficientStockError, QuantityBelowReservedError
from apps.storage.models import Product, Reservation, ReservationStatus
from apps.storage.services import StockLine
from chomik.auth import Principal
from chomik.db import make_session_factory, transaction
from tests.factories.storage import ProductFactory


@pytest.fixture
def engine(committed_db):
    """An engine whose every session has its own new connection."""
    engine = sa.create_engine(committed_db.urls["storage"], poolclass=sa.NullPool)
    yield engine
    engine.dispose()


def make_products(engine, *quantities):
    with Session(engine) as session:
        products = [ProductFactory.build(quantity=q) for q in quantities]
        session.add_all(products)
        session.commit()
        return [p.id for p in products]


def run_together(engine, jobs):
    """Run each job in its own thread and connection, all released at once.

    Each job gets an open session; its outcome (a value or the exception) is kept.
    """
    factory = make_session_factory(engine)
    barrier = threading.Barrier(
        len(jobs), timeout=60
    )  # a worker that failed to connect breaks it
    outcomes = [None] * len(jobs)

    def worker(index, job):
        with factory() as session:
            session.connection()  # connect (and begin) before the start line
            barrier.wait()
            try:
                outcomes[index] = job(session)
                session.commit()
            except Exception as exc:  # noqa: BLE001 - the outcome is what is tested
                session.rollback()
                outcomes[index] = exc

    threads = [threading.Thread(target=worker, args=(i, j)) for i, j in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    return outcomes


def stock_of(engine, product_ids):
    with Session(engine) as session:
        rows = session.scalars(sa.select(Product).where(Product.id.in_(product_ids)))
        return {p.id: (p.quantity, p.reserved) for p in rows}


def reserver(product_ids_and_quantities):
    order_id = uuid.uuid4()
    lines = [StockLine(p, n) for p, n in product_ids_and_quantities]

    def job(session):
        return services.reserve_stock(session, order_id=order_id, lines=lines).created

    return job


def test_two_hundred_buyers_for_thirty_seven_pairs_get_exactly_thirty_seven(engine):
    (product_id,) = make_products(engine, 37)
    outcomes = run_together(engine, [reserver([(product_id, 1)]) for _ in range(200)])

    kinds = Counter(type(o).__name__ for o in outcomes)
    assert kinds == {"bool": 37, "InsufficientStockError": 163}, kinds
    assert stock_of(engine, [product_id]) == {product_id: (37, 37)}
    with Session(engine) as session:
        held = session.scalar(sa.select(sa.func.count()).select_from(Reservation))
    assert held == 37


def test_multi_item_orders_over_overlapping_products_never_deadlock(engine):
    rng = random.Random(7)
    quantities = [rng.randint(5, 15) for _ in range(6)]
    product_ids = make_products(engine, *quantities)
    orders = []
    for _ in range(120):
        chosen = rng.sample(product_ids, rng.randint(2, 4))  # random order on purpose
        orders.append([(p, rng.randint(1, 3)) for p in chosen])

    outcomes = run_together(engine, [reserver(lines) for lines in orders])

    unexpected = [o for o in outcomes if isinstance(o, Exception)
                  and not isinstance(o, InsufficientStockError)]  # fmt: skip
    assert unexpected == []  # in particular no DeadlockDetected
    wanted = Counter()
    for lines, outcome in zip(orders, outcomes, strict=True):
        if outcome is True:
            for product_id, n in lines:
                wanted[product_id] += n
    final = stock_of(engine, product_ids)
    for product_id, quantity in zip(product_ids, quantities, strict=True):
        assert final[product_id] == (quantity, wanted[product_id])
        assert 0 <= wanted[product_id] <= quantity
    assert sum(1 for o in outcomes if o is True) > 0


def test_concurrent_repeats_of_one_order_reserve_once(engine):
    (product_id,) = make_products(engine, 10)
    job = reserver([(product_id, 3)])
    outcomes = run_together(engine, [job] * 20)
    assert sorted(outcomes) == [False] * 19 + [True]
    assert stock_of(engine, [product_id]) == {product_id: (10, 3)}


def test_concurrent_release_and_commit_of_one_order_apply_one_move(engine):
    (product_id,) = make_products(engine, 10)
    order_id = uuid.uuid4()
    with transaction(make_session_factory(engine)) as session:
        services.reserve_stock(
            session, order_id=order_id, lines=[StockLine(product_id, 4)]
        )

    def release(session):
        return services.release_stock(session, order_id=order_id).status

    def commit(session):
        return services.commit_stock(session, order_id=order_id).status

    outcomes = run_together(engine, [release, commit] * 10)
    statuses = {o for o in outcomes if isinstance(o, ReservationStatus)}
    assert len(statuses) == 1  # one move won; the others repeated it or were refused
    quantity, reserved = stock_of(engine, [product_id])[product_id]
    assert reserved == 0
    assert quantity == (6 if statuses == {ReservationStatus.COMMITTED} else 10)


def test_sellers_changing_quantity_during_a_rush_never_go_below_reserved(engine):
    (product_id,) = make_products(engine, 30)
    admin = Principal(id=str(uuid.uuid4()), roles=frozenset({"admin"}))
    rng = random.Random(11)

    def set_quantity(quantity):
        def job(session):
            services.update_product(
                session, user=admin, product_id=product_id,
                changes={"quantity": quantity},
            )  # fmt: skip
            return quantity

        return job

    jobs = [reserver([(product_id, 1)]) for _ in range(60)]
    jobs += [set_quantity(rng.randint(0, 40)) for _ in range(20)]
    rng.shuffle(jobs)
    outcomes = run_together(engine, jobs)

    allowed = (bool, int, InsufficientStockError, QuantityBelowReservedError)
    assert all(isinstance(o, allowed) for o in outcomes), outcomes  # no CheckViolation
    quantity, reserved = stock_of(engine, [product_id])[product_id]
    assert 0 <= reserved <= quantity
    assert reserved == sum(1 for o in outcomes if o is True)
