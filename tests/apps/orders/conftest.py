"""Orders test fixtures: the app on the test's savepoint, real storage in-process,
a fake of delivery's address check (an outside process), actors and helpers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa

from apps.orders import create_app
from apps.orders.models import Order
from apps.orders.services import Ports
from apps.orders.settings import OrdersSettings
from apps.storage import create_app as create_storage_app
from apps.storage.models import Product
from apps.storage.settings import StorageSettings
from chomik.jobs.scheduling import JobContext
from clients.storage import StorageClient
from tests.clients.wsgi import mounted
from tests.conftest import TEST_SERVICE_SECRET, auth
from tests.factories import orders as order_factories
from tests.factories import storage as storage_factories

STORAGE = "http://storage.test"


@dataclass
class FakeAddresses:
    """Delivery's address check, played in the test: addresses it was told about."""

    known: set[tuple[uuid.UUID, uuid.UUID]] = field(default_factory=set)
    calls: int = 0

    def add(self, buyer_id: uuid.UUID) -> uuid.UUID:
        address_id = uuid.uuid4()
        self.known.add((buyer_id, address_id))
        return address_id

    def address_belongs_to(self, buyer_id: uuid.UUID, address_id: uuid.UUID) -> bool:
        self.calls += 1
        return (buyer_id, address_id) in self.known


@pytest.fixture
def session(dbs):
    """An orders session inside the test's transaction; order factories use it."""
    session = dbs.session("orders")
    order_factories.bind(session)
    yield session
    session.close()


@pytest.fixture
def storage_session(dbs):
    """A storage session inside the test's transaction; product factories use it."""
    session = dbs.session("storage")
    storage_factories.bind(session)
    yield session
    session.close()


@pytest.fixture
def storage_app(dbs, settings_for, storage_session):
    """The real storage app, on the test's transaction."""
    return dbs.bind_app(create_storage_app(settings_for(StorageSettings)), "storage")


def storage_client(storage_app, kind=StorageClient):
    """A storage client (or subclass) calling the storage app in-process."""
    return kind(
        STORAGE,
        service_secret=TEST_SERVICE_SECRET,
        caller="orders",
        transport=mounted(storage_app, STORAGE),
    )


@pytest.fixture
def storage(storage_app):
    """The real storage client, calling the real storage app in-process."""
    client = storage_client(storage_app)
    yield client
    client.close()


@pytest.fixture
def addresses():
    return FakeAddresses()


@pytest.fixture
def settings(settings_for):
    return settings_for(OrdersSettings, storage_url=STORAGE)


@pytest.fixture
def make_app(dbs, settings, session):
    """An orders app on the test's transaction, calling the given ports."""

    def make(storage, addresses):
        app = create_app(settings, ports=Ports(storage=storage, addresses=addresses))
        return dbs.bind_app(app, "orders")

    return make


@pytest.fixture
def app(make_app, storage, addresses):
    return make_app(storage, addresses)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def job_context(dbs, settings):
    """What a job run receives, on the test's transaction."""
    return JobContext(settings, dbs.sessions("orders"), "test-replica")


@dataclass(frozen=True)
class Actor:
    id: uuid.UUID
    headers: dict[str, str]


def _actor(make_token, *roles):
    user_id = uuid.uuid4()
    return Actor(user_id, auth(make_token(str(user_id), *roles)))


@pytest.fixture
def as_buyer(make_token):
    return _actor(make_token, "buyer")


@pytest.fixture
def as_other_buyer(make_token):
    return _actor(make_token, "buyer")


@pytest.fixture
def as_seller(make_token):
    return _actor(make_token, "seller")


@pytest.fixture
def as_other_seller(make_token):
    return _actor(make_token, "seller")


@pytest.fixture
def as_admin(make_token):
    return _actor(make_token, "admin")


class Placing:
    """Places orders over HTTP for a buyer with a known address."""

    def __init__(self, client, addresses):
        self.client = client
        self.addresses = addresses
        self.address_of: dict[uuid.UUID, uuid.UUID] = {}

    def body(self, buyer, *lines, address_id=None):
        if address_id is None:
            address_id = self.address_of.setdefault(
                buyer.id, self.addresses.add(buyer.id)
            )
        return {
            "items": [
                {"product_id": str(product.id), "quantity": quantity}
                for product, quantity in lines
            ],
            "address_id": str(address_id),
        }

    def __call__(self, buyer, *lines, key=None, address_id=None, body=None):
        headers = {**buyer.headers, "Idempotency-Key": key or uuid.uuid4().hex}
        body = (
            body
            if body is not None
            else self.body(buyer, *lines, address_id=address_id)
        )
        return self.client.post("/api/v1/orders", json=body, headers=headers)


@pytest.fixture
def place(client, addresses):
    return Placing(client, addresses)


def stock_of(storage_session, product):
    """(quantity, reserved, sold) of a product, read fresh."""
    storage_session.expire_all()
    row = storage_session.get(Product, product.id)
    return row.quantity, row.reserved, row.sold


def make_due(session, order_id):
    """Move an order's expiry into the past (time, not behaviour, is changed)."""
    session.execute(
        sa.update(Order)
        .where(Order.id == order_id)
        .values(
            expires_at=sa.func.now() - sa.text("interval '1 second'"),
            next_check_at=sa.func.now() - sa.text("interval '1 second'"),
        )
    )
    session.commit()
