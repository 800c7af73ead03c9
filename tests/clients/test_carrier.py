"""Contract tests: the carrier client against the real carrier mock, in-process."""

import json
import uuid

import pytest
import sqlalchemy as sa

from clients._http import MalformedResponseError
from clients.carrier import (
    BadRequestError,
    CarrierCallback,
    CarrierClient,
    CarrierUnavailableError,
    CountryNotServedError,
    IllegalTransitionError,
    Shipment,
    ShipmentAddress,
    ShipmentNotFoundError,
    UnknownMerchantError,
)
from mocks.carrier import create_app
from mocks.carrier.settings import CarrierSettings
from tests.clients.wsgi import dropping, mounted

BASE = "http://carrier.test"
TOKEN = "client-test-carrier-merchant"
ADDRESS = ShipmentAddress(
    recipient="Ala Kowalska", phone="+48123456789", country="PL", city="Kraków",
    street="Floriańska 1", postal_code="31-019",
)  # fmt: skip


@pytest.fixture
def app(dbs, settings_for):
    settings = settings_for(
        CarrierSettings,
        carrier_merchant_tokens=f"{TOKEN}:chomik,other-token:someone",
        carrier_countries="PL,DE",
        carrier_public_url=BASE,
        carrier_step_seconds=0.0,
    )
    return dbs.bind_app(create_app(settings), "carrier")


def client_for(app, token=TOKEN):
    return CarrierClient(
        BASE, merchant_token=token, transport=mounted(app, BASE), retries=0
    )


@pytest.fixture
def carrier(app):
    client = client_for(app)
    yield client
    client.close()


def test_a_shipment_is_typed_and_the_same_reference_returns_it_again(carrier):
    first = carrier.create_shipment(reference="order-1", address=ADDRESS)
    assert isinstance(first, Shipment)
    assert (first.status, first.reference) == ("CREATED", "order-1")
    assert first.tracking_url == f"{BASE}/api/v1/tracking/{first.tracking_number}"
    assert carrier.create_shipment(reference="order-1", address=ADDRESS) == first
    assert carrier.find_shipment("order-1") == first
    assert carrier.get_shipment(first.id) == first


def test_an_unserved_country_is_a_typed_bad_request(carrier):
    address = ShipmentAddress(**{**ADDRESS.to_json(), "country": "US"})
    with pytest.raises(CountryNotServedError) as caught:
        carrier.create_shipment(reference="order-2", address=address)
    assert caught.value.status == 422
    assert caught.value.country == "US"
    assert isinstance(caught.value, BadRequestError)


def test_unknown_shipments_are_typed_not_found(carrier):
    with pytest.raises(ShipmentNotFoundError):
        carrier.find_shipment("nobody")
    with pytest.raises(ShipmentNotFoundError):
        carrier.get_shipment(uuid.uuid4())


def test_another_merchant_sees_nothing_and_a_bad_token_is_typed(app, carrier):
    shipment = carrier.create_shipment(reference="mine", address=ADDRESS)
    with pytest.raises(ShipmentNotFoundError):
        client_for(app, "other-token").get_shipment(shipment.id)
    with pytest.raises(UnknownMerchantError) as caught:
        client_for(app, "wrong").find_shipment("mine")
    assert caught.value.status == 401


def test_advancing_reaches_delivered_and_then_conflicts(carrier):
    shipment = carrier.create_shipment(reference="order-3", address=ADDRESS)
    assert carrier.advance(shipment.id).status == "IN_TRANSIT"
    assert carrier.advance(shipment.id).status == "DELIVERED"
    with pytest.raises(IllegalTransitionError):
        carrier.advance(shipment.id)


def test_a_carrier_refusing_work_is_a_typed_server_error(app, carrier):
    app.test_client().put("/api/v1/admin/faults", json={"unavailable_for": 60})
    with pytest.raises(CarrierUnavailableError) as caught:
        carrier.create_shipment(reference="while-down", address=ADDRESS)
    assert caught.value.status == 503


def test_a_callback_body_parses_into_its_typed_form(carrier, dbs):
    shipment = carrier.create_shipment(reference="order-4", address=ADDRESS)
    carrier.advance(shipment.id)
    body = dbs.session("carrier").scalar(sa.text("SELECT body FROM outgoing_callbacks"))
    callback = CarrierCallback.from_json(json.loads(json.dumps(body)))
    assert (callback.shipment_id, callback.reference, callback.status) == (
        shipment.id, "order-4", "IN_TRANSIT",
    )  # fmt: skip
    assert callback.occurred_at.tzinfo is not None


@pytest.mark.parametrize("field", ["status", "tracking_number"])
def test_an_answer_missing_a_field_is_a_malformed_response_error(app, field):
    client = client_for(dropping(app, [field]))
    try:
        with pytest.raises(MalformedResponseError) as caught:
            client.create_shipment(reference=f"malformed-{field}", address=ADDRESS)
    finally:
        client.close()
    assert repr(field) in caught.value.detail
