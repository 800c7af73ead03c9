"""The leased jobs, run in-process: expiry, and stock no placement left behind."""

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from apps.orders import services
from apps.orders.errors import IdempotencyKeySpentError
from apps.orders.jobs import JOBS
from apps.orders.metrics import ORDERS_BY_STATUS
from apps.orders.models import Order, OrderStatusChange, PlacementAttempt
from apps.orders.services import OrderRequest
from apps.storage import create_app as create_storage_app
from apps.storage.consumers import CONSUMERS as STORAGE_CONSUMERS
from apps.storage.models import Product, Reservation, ReservationStatus
from apps.storage.settings import StorageSettings
from chomik.auth import Principal
from chomik.db import make_session_factory
from chomik.jobs.scheduling import JobContext
from chomik.messaging.kafka import Envelope, decode
from chomik.web import runtime
from clients.events import EVENT_TYPES
from clients.orders import OrderStatus, move_order
from clients.storage import StorageClient
from tests.apps.orders.conftest import Placing, make_due, stock_of, storage_client
from tests.conftest import auth
from tests.factories.orders import OrderFactory
from tests.factories.storage import ProductFactory

S = OrderStatus


def run_job(name, context):
    """One run of a job of the orders worker, as its scheduler would start it."""
    (job,) = [job for job in JOBS if job.name == name]
    return job.func(context)


def outbox_types(session):
    return session.scalars(sa.text("SELECT type FROM outbox_events ORDER BY seq")).all()


def status_of(session, order_id):
    session.expire_all()
    return session.get(Order, order_id).status


def test_expiry_expires_each_due_unpaid_order_once(session, job_context):
    due = [OrderFactory(status=s) for s in (S.AWAITING_PAYMENT, S.PAYMENT_FAILED)]
    later = OrderFactory(status=S.AWAITING_PAYMENT)
    paying = OrderFactory(status=S.PAYMENT_PENDING)
    session.commit()
    for order in [*due, paying]:
        make_due(session, order.id)
    run_job("expire_due_orders", job_context)
    run_job("expire_due_orders", job_context)
    assert [status_of(session, o.id) for o in due] == [S.EXPIRED, S.EXPIRED]
    assert status_of(session, later.id) == S.AWAITING_PAYMENT
    assert status_of(session, paying.id) == S.PAYMENT_PENDING
    assert outbox_types(session) == ["order.expired", "order.expired"]
    expired = session.scalars(
        sa.select(OrderStatusChange.order_id).where(
            OrderStatusChange.to_status == S.EXPIRED
        )
    ).all()
    assert sorted(expired) == sorted(o.id for o in due)
    assert all(session.get(Order, o.id).next_check_at is None for o in due)


def test_an_order_paid_for_after_its_claim_is_not_expired(session, job_context):
    order = OrderFactory(status=S.AWAITING_PAYMENT)
    session.commit()
    make_due(session, order.id)
    move_order(session, order.id, to=S.PAYMENT_PENDING)  # payment got there first
    session.commit()
    session.execute(  # as if claimed just before: a stale due time, a token
        sa.update(Order)
        .where(Order.id == order.id)
        .values(next_check_at=sa.func.now() - sa.text("interval '1 second'"))
    )
    session.commit()
    run_job("expire_due_orders", job_context)
    assert status_of(session, order.id) == S.PAYMENT_PENDING
    assert session.get(Order, order.id).next_check_at is None


def test_an_order_not_yet_expired_is_left_until_its_time(session, job_context):
    order = OrderFactory(status=S.AWAITING_PAYMENT)
    session.commit()
    session.execute(
        sa.update(Order)
        .where(Order.id == order.id)
        .values(next_check_at=sa.func.now() - sa.text("interval '1 second'"))
    )
    session.commit()
    run_job("expire_due_orders", job_context)
    session.expire_all()
    row = session.get(Order, order.id)
    assert row.status == S.AWAITING_PAYMENT
    assert row.next_check_at == row.expires_at


class CurrencyChangedMidway(StorageClient):
    """Storage where a seller switches a product's currency between our read and
    our reserve (through storage's own API)."""

    product = None
    seller_headers: dict = {}

    def reserve(self, order_id, items):
        if self.product is None:
            return super().reserve(order_id, items)
        self.http.request(
            "PATCH", f"/api/v1/products/{self.product}", json={"currency": "USD"},
            headers=self.seller_headers,
        )  # fmt: skip
        return super().reserve(order_id, items)


def test_a_placement_failing_after_its_reserve_releases_the_stock(
    make_app, storage_app, addresses, as_buyer, make_token, session, storage_session
):
    seller = uuid.uuid4()
    a = ProductFactory(quantity=5)
    b = ProductFactory(quantity=5, seller_id=seller)
    raced = storage_client(storage_app, CurrencyChangedMidway)
    raced.product = b.id
    raced.seller_headers = auth(make_token(str(seller), "seller"))
    place = Placing(make_app(raced, addresses).test_client(), addresses)
    response = place(as_buyer, (a, 2), (b, 1), key="k")
    assert response.status_code == 422
    assert response.json["type"] == "mixed-currencies"
    assert stock_of(storage_session, a) == (5, 0, 0)
    assert stock_of(storage_session, b) == (5, 0, 0)
    assert session.scalar(sa.select(sa.func.count()).select_from(Order)) == 0
    # The key's order id gave its stock back for good: a retry is told to use a new key.
    raced.product = None
    storage_session.execute(
        sa.update(Product).where(Product.id == b.id).values(currency="RUB")
    )
    storage_session.commit()
    retry = place(as_buyer, (a, 2), (b, 1), key="k")
    assert retry.status_code == 409
    assert retry.json["type"] == "idempotency-key-spent"
    assert stock_of(storage_session, a) == (5, 0, 0)


class Crash:
    """A placement whose process died after reserving, before its commit.

    Separate connections, really committed: the attempt row outlives the
    placement's transaction as it would outlive its process.
    """

    def __init__(self, committed_db, settings_for, addresses):
        self.db = committed_db
        self.orders = make_session_factory(committed_db.engine("orders"))
        self.product = ProductFactory.build(quantity=5)
        with Session(committed_db.engine("storage")) as s, s.begin():
            s.add(self.product)
            s.flush()
            s.expunge(self.product)
        self.storage_app = create_storage_app(settings_for(StorageSettings))
        self.storage = storage_client(self.storage_app)
        self.addresses = addresses
        buyer = uuid.uuid4()
        self.buyer = Principal(str(buyer), frozenset({"buyer"}))
        self.request = OrderRequest({self.product.id: 2}, addresses.add(buyer))

    def place(self, *, commit):
        with self.orders() as session:
            placed = services.place_order(
                session, buyer=self.buyer, request=self.request, idempotency_key="k",
                storage=self.storage, addresses=self.addresses, attempts=self.orders,
                ttl=dt.timedelta(minutes=15), max_unpaid=20,
            )  # fmt: skip
            if commit:
                session.commit()
            else:
                session.rollback()  # the process died: never committed
        return placed

    def stock(self):
        with Session(self.db.engine("storage")) as s:
            row = s.get(Product, self.product.id)
            return row.quantity, row.reserved

    def close(self):
        self.storage.close()
        runtime(self.storage_app).engine.dispose()


@pytest.fixture
def crash(committed_db, settings_for, addresses):
    crash = Crash(committed_db, settings_for, addresses)
    yield crash
    crash.close()


def test_a_retry_after_a_crash_places_the_order_on_the_same_reservation(crash):
    first = crash.place(commit=False)
    assert crash.stock() == (5, 2)
    again = crash.place(commit=True)
    assert again.created
    assert again.order.id == first.order.id
    assert crash.stock() == (5, 2)  # reserved once, not twice
    with crash.orders() as session:
        assert session.get(Order, again.order.id).status == S.AWAITING_PAYMENT
        assert (
            session.scalar(sa.select(sa.func.count()).select_from(PlacementAttempt))
            == 0
        )


def test_stock_of_a_placement_that_died_before_its_commit_is_released(crash, settings):
    placed = crash.place(commit=False)
    orders_db, stock = crash.orders, crash.stock
    context = JobContext(settings, orders_db, "test-replica")
    with orders_db() as session:
        assert session.get(Order, placed.order.id) is None
    assert stock() == (5, 2)
    run_job("release_abandoned_placements", context)  # not due: held as an order's
    assert abandoned(orders_db) == []
    with orders_db.begin() as session:
        session.execute(
            sa.update(PlacementAttempt).values(
                next_check_at=sa.func.now() - sa.text("interval '1 second'")
            )
        )
    run_job("release_abandoned_placements", context)
    run_job("release_abandoned_placements", context)  # handled once only
    (event,) = abandoned(orders_db)
    assert event.order_id == str(placed.order.id)
    # What storage's worker does with it (the broker is shown in test_stock_flow).
    with Session(crash.db.engine("storage")) as s, s.begin():
        STORAGE_CONSUMERS[type(event)](s, event)
    assert stock() == (5, 0)
    with Session(crash.db.engine("storage")) as s:
        status = s.scalar(
            sa.select(Reservation.status).where(Reservation.order_id == placed.order.id)
        )
    assert status == ReservationStatus.RELEASED
    # The key is spent now: a late retry reserves nothing and says so.
    with pytest.raises(IdempotencyKeySpentError):
        crash.place(commit=True)
    assert stock() == (5, 0)
    with orders_db.begin() as session:
        assert (
            services.prune_placement_attempts(session, older_than=dt.timedelta()) == 1
        )


def abandoned(sessions):
    """The `order.abandoned` events in the orders outbox, decoded."""
    with sessions() as session:
        payloads = session.scalars(
            sa.text("SELECT payload FROM outbox_events WHERE type = 'order.abandoned'")
        ).all()
    return [decode(Envelope.from_json(bytes(p)), EVENT_TYPES) for p in payloads]


def test_a_placement_whose_order_was_stored_keeps_its_stock(
    session, storage, storage_session, place, as_buyer, job_context
):
    product = ProductFactory(quantity=5)
    order_id = uuid.UUID(place(as_buyer, (product, 2)).json["id"])
    session.add(  # a leftover row of a placement that did store its order
        PlacementAttempt(
            order_id=order_id, buyer_id=as_buyer.id,
            next_check_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1),
        )
    )  # fmt: skip
    session.commit()
    run_job("release_abandoned_placements", job_context)
    assert "order.abandoned" not in outbox_types(session)
    assert stock_of(storage_session, product) == (5, 2, 0)
    session.expire_all()
    assert session.get(PlacementAttempt, order_id).next_check_at is None


def test_orders_by_status_are_counted_for_the_metrics(session, job_context):
    for status in (S.AWAITING_PAYMENT, S.AWAITING_PAYMENT, S.PAID):
        OrderFactory(status=status)
    session.commit()
    run_job("count_orders_by_status", job_context)
    assert ORDERS_BY_STATUS.labels("AWAITING_PAYMENT")._value.get() == 2
    assert ORDERS_BY_STATUS.labels("PAID")._value.get() == 1
    assert ORDERS_BY_STATUS.labels("EXPIRED")._value.get() == 0
