"""Contract tests: the orders client against the real orders app, in-process.

The orders app calls the real storage app in-process; delivery's address check
is played by the test (an outside process).
"""

import uuid
from decimal import Decimal

import pytest

from apps.orders import create_app
from apps.orders.services import Ports
from apps.orders.settings import OrdersSettings
from apps.storage import create_app as create_storage_app
from apps.storage.settings import StorageSettings
from clients._http import (
    BadRequestError,
    ForbiddenError,
    MalformedResponseError,
    UnauthorizedError,
)
from clients.orders import (
    IdempotencyKeyReusedError,
    InsufficientStockError,
    Order,
    OrderConflictError,
    OrderNotFoundError,
    OrdersClient,
    OrderStatus,
    move_order,
)
from clients.storage import StorageClient
from tests.apps.orders.conftest import FakeAddresses
from tests.clients.wsgi import dropping, mounted
from tests.conftest import TEST_SERVICE_SECRET
from tests.factories import storage as storage_factories
from tests.factories.storage import ProductFactory

BASE, STORAGE = "http://orders.test", "http://storage.test"


@pytest.fixture
def addresses():
    return FakeAddresses()


@pytest.fixture
def orders_app(dbs, settings_for, addresses):
    storage_factories.bind(dbs.session("storage"))
    storage_app = dbs.bind_app(
        create_storage_app(settings_for(StorageSettings)), "storage"
    )
    storage = StorageClient(
        STORAGE, service_secret=TEST_SERVICE_SECRET, caller="orders",
        transport=mounted(storage_app, STORAGE),
    )  # fmt: skip
    app = create_app(
        settings_for(OrdersSettings), ports=Ports(storage=storage, addresses=addresses)
    )
    return dbs.bind_app(app, "orders")


@pytest.fixture
def orders(orders_app):
    client = OrdersClient(
        BASE, service_secret=TEST_SERVICE_SECRET, caller="payment",
        transport=mounted(orders_app, BASE),
    )  # fmt: skip
    yield client
    client.close()


@pytest.fixture
def buyer(make_token, addresses):
    buyer_id = uuid.uuid4()
    return buyer_id, make_token(str(buyer_id), "buyer"), addresses.add(buyer_id)


def test_placing_answers_a_typed_order_and_a_replay_the_same_one(orders, buyer):
    buyer_id, token, address = buyer
    product = ProductFactory(quantity=5, price=Decimal("12.30"), title="Gazelle")
    placed = orders.place_order(
        access_token=token, idempotency_key="k1", items=[(product.id, 2)],
        address_id=address,
    )  # fmt: skip
    assert placed.created
    order = placed.order
    assert isinstance(order, Order)
    assert (order.buyer_id, order.status, order.total) == (
        buyer_id, OrderStatus.AWAITING_PAYMENT, Decimal("24.60")
    )  # fmt: skip
    (line,) = order.items
    assert (line.product_id, line.title, line.quantity) == (product.id, "Gazelle", 2)
    assert line.unit_price == Decimal("12.30")
    replay = orders.place_order(
        access_token=token, idempotency_key="k1", items=[(product.id, 2)],
        address_id=address,
    )  # fmt: skip
    assert (replay.created, replay.order) == (False, order)
    assert orders.get_order(order.id) == order


def test_refusals_are_typed_errors(orders, buyer):
    _, token, address = buyer
    product = ProductFactory(quantity=1)
    with pytest.raises(InsufficientStockError) as caught:
        orders.place_order(
            access_token=token, idempotency_key="k2", items=[(product.id, 2)],
            address_id=address,
        )  # fmt: skip
    assert caught.value.product_ids == (str(product.id),)
    orders.place_order(
        access_token=token, idempotency_key="k3", items=[(product.id, 1)],
        address_id=address,
    )  # fmt: skip
    with pytest.raises(IdempotencyKeyReusedError):
        orders.place_order(
            access_token=token, idempotency_key="k3", items=[(product.id, 1)],
            address_id=uuid.uuid4(),
        )  # fmt: skip
    with pytest.raises(BadRequestError) as bad:
        orders.place_order(
            access_token=token, idempotency_key="k4", items=[], address_id=address
        )
    assert "items" in bad.value.problem["errors"]
    with pytest.raises(OrderNotFoundError):
        orders.get_order(uuid.uuid4())


def test_listing_and_cancelling_as_the_buyer(orders, buyer, make_token, dbs):
    _, token, address = buyer
    product = ProductFactory(quantity=5)
    placed = [
        orders.place_order(
            access_token=token, idempotency_key=f"k-{n}", items=[(product.id, 1)],
            address_id=address,
        ).order
        for n in range(3)
    ]  # fmt: skip
    page = orders.list_orders(access_token=token, page_size=2)
    assert (page.total, len(page.items)) == (3, 2)
    assert all(isinstance(o, Order) for o in page.items)
    cancelled = orders.cancel_order(access_token=token, order_id=placed[0].id)
    assert cancelled.status == OrderStatus.CANCELLED
    only = orders.list_orders(access_token=token, status=OrderStatus.CANCELLED)
    assert [o.id for o in only.items] == [placed[0].id]
    session = dbs.session("orders")
    move_order(session, placed[1].id, to=OrderStatus.PAYMENT_PENDING)
    session.commit()
    with pytest.raises(OrderConflictError):
        orders.cancel_order(access_token=token, order_id=placed[1].id)
    stranger = make_token(str(uuid.uuid4()), "buyer")
    with pytest.raises(OrderNotFoundError):
        orders.cancel_order(access_token=stranger, order_id=placed[2].id)


def test_the_internal_read_needs_the_service_secret_and_users_need_their_role(
    orders_app, orders, make_token
):
    wrong = OrdersClient(
        BASE, service_secret="not-the-secret-0123456789abcdef0123456789",
        caller="payment", transport=mounted(orders_app, BASE),
    )  # fmt: skip
    with pytest.raises(UnauthorizedError):
        wrong.get_order(uuid.uuid4())
    seller = make_token(str(uuid.uuid4()), "seller")
    with pytest.raises(ForbiddenError):
        orders.place_order(
            access_token=seller, idempotency_key="k", items=[(uuid.uuid4(), 1)],
            address_id=uuid.uuid4(),
        )  # fmt: skip


def test_an_answer_missing_a_field_is_a_malformed_response(orders_app, buyer):
    _, token, address = buyer
    product = ProductFactory(quantity=5)
    broken = OrdersClient(
        BASE, service_secret=TEST_SERVICE_SECRET, caller="payment",
        transport=mounted(dropping(orders_app, ["items", "*", "unit_price"]), BASE),
    )  # fmt: skip
    with pytest.raises(MalformedResponseError):
        broken.place_order(
            access_token=token, idempotency_key="k-m", items=[(product.id, 1)],
            address_id=address,
        )  # fmt: skip
