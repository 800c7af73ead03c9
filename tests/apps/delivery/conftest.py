"""Delivery test fixtures: the app on the test's savepoint, a session, actors."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest

from apps.delivery import create_app
from apps.delivery.settings import DeliverySettings
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
