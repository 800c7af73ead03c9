"""Contract tests: the delivery client against the real delivery app, in-process."""

import datetime as dt
import uuid

import pytest

from apps.delivery import create_app
from apps.delivery.settings import DeliverySettings
from chomik.db import utcnow
from chomik.logs import request_id_var
from clients._http import ClientError, MalformedResponseError, UnauthorizedError
from clients.delivery import Address, DeliveryClient, NotFoundError, TransportError
from tests.clients.wsgi import dropping, mounted
from tests.conftest import TEST_SERVICE_SECRET
from tests.factories import delivery as factories
from tests.factories.delivery import AddressFactory

BASE = "http://delivery.test"


def client_for(app, secret=TEST_SERVICE_SECRET, base=BASE):
    return DeliveryClient(
        base, service_secret=secret, caller="orders", transport=mounted(app, base)
    )


@pytest.fixture
def app(dbs, settings_for):
    factories.bind(dbs.session("delivery"))
    return dbs.bind_app(create_app(settings_for(DeliverySettings)), "delivery")


@pytest.fixture
def delivery(app):
    client = client_for(app)
    yield client
    client.close()


def test_the_buyers_address_is_a_typed_address(delivery):
    stored = AddressFactory(country="DE", phone="+4930123456", city="Berlin")
    address = delivery.get_buyer_address(stored.buyer_id, stored.id)
    assert address == Address(
        id=stored.id,
        buyer_id=stored.buyer_id,
        recipient=stored.recipient,
        phone="+4930123456",
        country="DE",
        city="Berlin",
        street=stored.street,
        postal_code=stored.postal_code,
        created_at=stored.created_at,
    )
    assert address.created_at.tzinfo is not None
    assert delivery.address_belongs_to(stored.buyer_id, stored.id) is True


def test_another_buyers_deleted_or_unknown_address_is_none(delivery):
    theirs = AddressFactory()
    deleted = AddressFactory(deleted_at=utcnow())
    assert delivery.get_buyer_address(uuid.uuid4(), theirs.id) is None
    assert delivery.address_belongs_to(uuid.uuid4(), theirs.id) is False
    assert delivery.address_belongs_to(deleted.buyer_id, deleted.id) is False
    assert delivery.address_belongs_to(uuid.uuid4(), uuid.uuid4()) is False


def test_a_404_that_is_not_delivery_s_answer_is_an_error_not_false(app):
    client = client_for(app, base=f"{BASE}/nowhere")
    address = AddressFactory()
    with pytest.raises(NotFoundError) as caught:
        client.address_belongs_to(address.buyer_id, address.id)
    assert caught.value.type == "not-found"


def test_a_wrong_service_secret_is_refused(app):
    client = client_for(app, secret="not-the-secret-0123456789abcdef0123456789")
    address = AddressFactory()
    with pytest.raises(UnauthorizedError):
        client.address_belongs_to(address.buyer_id, address.id)


def test_an_unreachable_service_is_a_transport_error():
    client = DeliveryClient(
        "http://127.0.0.1:9", service_secret=TEST_SERVICE_SECRET, caller="orders",
        timeout=0.5, retries=0,
    )  # fmt: skip
    with pytest.raises(TransportError):
        client.address_belongs_to(uuid.uuid4(), uuid.uuid4())


def test_the_request_id_is_passed_on(delivery):
    token = request_id_var.set("req-delivery-123")
    try:
        response = delivery.http.request("GET", "/health/live")
    finally:
        request_id_var.reset(token)
    assert response.headers["X-Request-Id"] == "req-delivery-123"


def test_created_at_is_read_as_an_aware_datetime(delivery):
    stored = AddressFactory(created_at=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC))
    address = delivery.get_buyer_address(stored.buyer_id, stored.id)
    assert address.created_at == dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


@pytest.mark.parametrize("field", ["buyer_id", "created_at", "country"])
def test_an_answer_missing_a_field_is_a_malformed_response_error(app, field):
    stored = AddressFactory()
    client = client_for(dropping(app, [field]))
    try:
        with pytest.raises(MalformedResponseError) as caught:
            client.get_buyer_address(stored.buyer_id, stored.id)
    finally:
        client.close()
    assert isinstance(caught.value, ClientError)
    assert repr(field) in caught.value.detail
