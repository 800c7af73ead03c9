"""Contract tests: the storage client against the real storage app, in-process."""

import uuid
from decimal import Decimal

import pytest

from apps.storage import create_app
from apps.storage.settings import StorageSettings
from chomik.logs import request_id_var
from clients._http import ClientError, UnauthorizedError
from clients.storage import (
    BadRequestError,
    IllegalTransitionError,
    InsufficientStockError,
    MalformedResponseError,
    Product,
    ProductNotFoundError,
    Reservation,
    ReservationMismatchError,
    ReservationNotFoundError,
    StockItem,
    StorageClient,
)
from tests.clients.wsgi import dropping, mounted
from tests.conftest import TEST_SERVICE_SECRET
from tests.factories import storage as factories
from tests.factories.storage import ProductFactory

BASE = "http://storage.test"


def client_for(app, secret=TEST_SERVICE_SECRET):
    return StorageClient(
        BASE, service_secret=secret, caller="orders", transport=mounted(app, BASE)
    )


@pytest.fixture
def app(dbs, settings_for):
    factories.bind(dbs.session("storage"))
    return dbs.bind_app(create_app(settings_for(StorageSettings)), "storage")


@pytest.fixture
def storage(app):
    client = client_for(app)
    yield client
    client.close()


def test_reserve_returns_a_typed_reservation_and_repeats_are_the_same(storage):
    product = ProductFactory(quantity=3, price=Decimal("12.30"), title="Samba")
    order_id = uuid.uuid4()
    first = storage.reserve(order_id, [StockItem(product.id, 2)])
    assert isinstance(first, Reservation)
    assert first.order_id == order_id
    assert first.status == "RESERVED"
    (item,) = first.items
    assert (item.product_id, item.quantity, item.title) == (product.id, 2, "Samba")
    assert item.unit_price == Decimal("12.30")
    assert storage.reserve(order_id, [StockItem(product.id, 2)]) == first
    assert storage.get_reservation(order_id) == first
    assert storage.get_product(product.id).available == 1


def test_insufficient_stock_is_a_typed_error_with_the_numbers(storage):
    product = ProductFactory(quantity=1)
    with pytest.raises(InsufficientStockError) as caught:
        storage.reserve(uuid.uuid4(), [StockItem(product.id, 2)])
    assert caught.value.status == 409
    assert caught.value.product_id == str(product.id)
    assert caught.value.available == 1


def test_unknown_product_is_a_typed_error(storage):
    missing = uuid.uuid4()
    with pytest.raises(ProductNotFoundError) as caught:
        storage.reserve(uuid.uuid4(), [StockItem(missing, 1)])
    assert caught.value.product_id == str(missing)
    with pytest.raises(ProductNotFoundError):
        storage.get_product(missing)


def test_products_by_id_come_in_one_call_without_the_unknown_ones(storage):
    a = ProductFactory(quantity=3)
    b = ProductFactory(quantity=4)
    missing = uuid.uuid4()
    found = storage.get_products([a.id, missing, b.id, a.id])
    assert set(found) == {a.id, b.id}
    assert (found[a.id].available, found[b.id].available) == (3, 4)
    assert storage.get_products([]) == {}


def test_other_items_for_a_reserved_order_are_a_mismatch(storage):
    product = ProductFactory(quantity=5)
    order_id = uuid.uuid4()
    storage.reserve(order_id, [StockItem(product.id, 1)])
    with pytest.raises(ReservationMismatchError):
        storage.reserve(order_id, [StockItem(product.id, 2)])


def test_bad_items_are_a_bad_request(storage):
    product = ProductFactory(quantity=5)
    with pytest.raises(BadRequestError) as caught:
        storage.reserve(
            uuid.uuid4(), [StockItem(product.id, 1), StockItem(product.id, 1)]
        )
    assert caught.value.status == 422
    assert "items.1.product_id" in caught.value.problem["errors"]


def test_release_and_commit_are_idempotent_and_refuse_illegal_moves(storage):
    product = ProductFactory(quantity=5)
    sold, dropped = uuid.uuid4(), uuid.uuid4()
    storage.reserve(sold, [StockItem(product.id, 2)])
    storage.reserve(dropped, [StockItem(product.id, 1)])
    assert storage.commit(sold).status == storage.commit(sold).status == "COMMITTED"
    assert (
        storage.release(dropped).status == storage.release(dropped).status == "RELEASED"
    )
    with pytest.raises(IllegalTransitionError):
        storage.commit(dropped)
    with pytest.raises(IllegalTransitionError):
        storage.release(sold)
    after = storage.get_product(product.id)
    assert (after.quantity, after.available) == (3, 3)


def test_unknown_reservation_is_a_typed_error(storage):
    with pytest.raises(ReservationNotFoundError):
        storage.commit(uuid.uuid4())
    with pytest.raises(ReservationNotFoundError):
        storage.get_reservation(uuid.uuid4())


def test_a_reserve_after_its_release_is_a_typed_error(storage):
    order_id = uuid.uuid4()
    product = ProductFactory(quantity=3)
    assert storage.release(order_id).status == "RELEASED"  # overtook the reserve
    with pytest.raises(IllegalTransitionError):
        storage.reserve(order_id, [StockItem(product.id, 1)])


def test_list_products_passes_filters_and_reads_the_page(storage):
    ProductFactory(brand="Nike", price=Decimal("10.00"))
    wanted = ProductFactory(brand="Adidas", price=Decimal("20.00"))
    ProductFactory(brand="Adidas", price=Decimal("30.00"))
    page = storage.list_products(brand="Adidas", max_price=Decimal("25"), sort="price")
    assert page.total == 1
    assert [p.id for p in page.items] == [wanted.id]
    assert isinstance(page.items[0], Product)
    assert page.items[0].price == Decimal("20.00")


def test_a_wrong_service_secret_is_refused(app):
    client = client_for(app, secret="not-the-secret-0123456789abcdef0123456789")
    with pytest.raises(UnauthorizedError):
        client.get_reservation(uuid.uuid4())


def test_the_request_id_is_passed_on(storage):
    token = request_id_var.set("req-storage-123")
    try:
        response = storage.http.request("GET", "/health/live")
    finally:
        request_id_var.reset(token)
    assert response.headers["X-Request-Id"] == "req-storage-123"


@pytest.mark.parametrize(
    ("path", "call"),
    [
        (["price"], lambda client, product: client.get_product(product.id)),
        (["items", "*", "price"], lambda client, product: client.list_products()),
        (["total"], lambda client, product: client.list_products()),
        (
            ["items", "*", "unit_price"],
            lambda client, product: client.reserve(
                uuid.uuid4(), [StockItem(product.id, 1)]
            ),
        ),
        (
            ["order_id"],
            lambda client, product: client.reserve(
                uuid.uuid4(), [StockItem(product.id, 1)]
            ),
        ),
    ],
)
def test_an_answer_missing_a_field_is_a_malformed_response_error(app, path, call):
    product = ProductFactory(quantity=3)
    client = client_for(dropping(app, path))
    try:
        with pytest.raises(MalformedResponseError) as caught:
            call(client, product)
    finally:
        client.close()
    assert isinstance(caught.value, ClientError)
    assert repr(path[-1]) in caught.value.detail
