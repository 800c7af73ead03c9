"""Carrier mock fixtures: the app on the test's savepoint and a merchant."""

from __future__ import annotations

import pytest

from mocks.carrier import create_app
from mocks.carrier.settings import CarrierSettings
from tests.conftest import auth

MERCHANT_TOKEN = "carrier-merchant-token"
OTHER_TOKEN = "carrier-other-token"
SECRET = "carrier-test-callback-secret"
CALLBACK_URL = "http://127.0.0.1:17000/api/v1/callbacks/carrier"


@pytest.fixture
def carrier_settings(settings_for):
    return settings_for(
        CarrierSettings,
        carrier_merchant_tokens=f"{MERCHANT_TOKEN}:chomik,{OTHER_TOKEN}:someone",
        carrier_callback_secrets=f"{SECRET},an-older-secret",
        carrier_callback_url=CALLBACK_URL,
        carrier_countries="DE,PL",
        carrier_public_url="http://carrier.test",
        carrier_step_seconds=0.0,  # only `advance` moves shipments here
    )


@pytest.fixture
def session(dbs):
    session = dbs.session("carrier")
    yield session
    session.close()


@pytest.fixture
def app(dbs, carrier_settings, session):
    return dbs.bind_app(create_app(carrier_settings), "carrier")


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def merchant():
    return auth(MERCHANT_TOKEN)


ADDRESS = {
    "recipient": "Ala Kowalska",
    "phone": "+48123456789",
    "country": "PL",
    "city": "Kraków",
    "street": "Floriańska 1",
    "postal_code": "31-019",
}


def new_shipment(client, headers, reference="order-1", **address):
    return client.post(
        "/api/v1/shipments",
        json={"reference": reference, "address": {**ADDRESS, **address}},
        headers=headers,
    )
