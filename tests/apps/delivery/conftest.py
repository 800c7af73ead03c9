"""Delivery test fixtures: the app on the test's savepoint, a session, actors, the
carrier mock in-process."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest

from apps.delivery import create_app
from apps.delivery.settings import DeliverySettings
from clients.carrier import CarrierClient
from mocks.carrier import create_app as create_carrier_app
from mocks.carrier.settings import CarrierSettings
from tests.clients.wsgi import mounted
from tests.conftest import auth
from tests.factories import delivery as factories


@pytest.fixture
def session(dbs):
    """A delivery session inside the test's transaction; factories write through it."""
    session = dbs.session("delivery")
    factories.bind(session)
    yield session
    session.close()


@pytest.fixture
def app(dbs, settings_for, session):
    return dbs.bind_app(create_app(settings_for(DeliverySettings)), "delivery")


@pytest.fixture
def client(app):
    return app.test_client()


@dataclass(frozen=True)
class Actor:
    id: uuid.UUID
    headers: dict[str, str]


def _actor(make_token, role):
    user_id = uuid.uuid4()
    return Actor(user_id, auth(make_token(str(user_id), role)))


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
def as_admin(make_token):
    return _actor(make_token, "admin")


@pytest.fixture
def as_service(service_token):
    return auth(service_token)


# --- the carrier (its mock, in-process) and the delivery worker's settings ---------

CARRIER_BASE = "http://carrier.test"
CARRIER_TOKEN = "delivery-test-carrier-token"
CARRIER_SECRET = "delivery-test-carrier-callback-secret"


@pytest.fixture
def delivery_settings(settings_for):
    return settings_for(
        DeliverySettings,
        carrier_url=CARRIER_BASE,
        carrier_merchant_token=CARRIER_TOKEN,
        carrier_callback_secrets=f"{CARRIER_SECRET},an-older-carrier-secret",
        shipment_poll_age=60,
    )


@pytest.fixture
def carrier_settings(settings_for):
    return settings_for(
        CarrierSettings,
        carrier_merchant_tokens=f"{CARRIER_TOKEN}:chomik",
        carrier_callback_secrets=CARRIER_SECRET,
        carrier_countries="RU,PL,DE",
        carrier_public_url=CARRIER_BASE,
        carrier_step_seconds=0.0,  # only `advance` moves shipments here
    )


@pytest.fixture
def carrier_app(dbs, carrier_settings):
    return dbs.bind_app(create_carrier_app(carrier_settings), "carrier")


@pytest.fixture
def carrier(carrier_app):
    """The real carrier client, its calls going to the carrier mock in-process."""
    client = CarrierClient(
        CARRIER_BASE,
        merchant_token=CARRIER_TOKEN,
        transport=mounted(carrier_app, CARRIER_BASE),
        retries=0,
    )
    yield client
    client.close()
