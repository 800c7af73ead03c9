"""Storage test fixtures: the app on the test's savepoint, a session, actors."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest

from apps.storage import create_app
from apps.storage.settings import StorageSettings
from tests.conftest import auth
from tests.factories import storage as factories


@pytest.fixture
def session(dbs):
    """A storage session inside the test's transaction; factories write through it."""
    session = dbs.session("storage")
    factories.bind(session)
    yield session
    session.close()


@pytest.fixture
def app(dbs, settings_for, session):
    return dbs.bind_app(create_app(settings_for(StorageSettings)), "storage")


@pytest.fixture
def client(app):
    return app.test_client()


@dataclass(frozen=True)
class Actor:
    id: uuid.UUID
    headers: dict[str, str]


@pytest.fixture
def as_seller(make_token):
    seller_id = uuid.uuid4()
    return Actor(seller_id, auth(make_token(str(seller_id), "seller")))


@pytest.fixture
def as_other_seller(make_token):
    seller_id = uuid.uuid4()
    return Actor(seller_id, auth(make_token(str(seller_id), "seller")))


@pytest.fixture
def as_admin(make_token):
    admin_id = uuid.uuid4()
    return Actor(admin_id, auth(make_token(str(admin_id), "admin")))


@pytest.fixture
def as_buyer(make_token):
    buyer_id = uuid.uuid4()
    return Actor(buyer_id, auth(make_token(str(buyer_id), "buyer")))


@pytest.fixture
def as_service(service_token):
    return auth(service_token)
