"""Bank mock fixtures: the app on the test's savepoint, a merchant, customers."""

from __future__ import annotations

import uuid

import pytest

from mocks.bank import create_app
from mocks.bank.settings import BankSettings
from tests.conftest import auth

MERCHANT_TOKEN = "merchant-one-token"
MERCHANT = uuid.UUID("00000000-0000-4000-8000-0000000000a1")
OTHER_TOKEN = "merchant-two-token"
OTHER = uuid.UUID("00000000-0000-4000-8000-0000000000a2")
SECRET = "bank-test-callback-secret"


@pytest.fixture
def bank_settings(settings_for):
    return settings_for(
        BankSettings,
        bank_merchant_tokens=f"{MERCHANT_TOKEN}:{MERCHANT},{OTHER_TOKEN}:{OTHER}",
        bank_callback_secrets=f"{SECRET},an-older-secret",
        bank_public_url="http://bank.test",
    )


@pytest.fixture
def session(dbs):
    session = dbs.session("bank")
    yield session
    session.close()


@pytest.fixture
def app(dbs, bank_settings, session):
    return dbs.bind_app(create_app(bank_settings), "bank")


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def merchant():
    return auth(MERCHANT_TOKEN)


def new_account(client, balance="100.00", owner="buyer"):
    response = client.post(
        "/api/v1/accounts", json={"owner": owner, "balance": balance}
    )
    assert response.status_code == 201, response.json
    return response.json


def new_transaction(client, headers, *, amount="30.00", reference=None, **extra):
    body = {
        "amount": amount,
        "currency": "RUB",
        "merchant_account_id": str(MERCHANT),
        "callback_url": "http://127.0.0.1:17000/api/v1/callbacks/bank",
        "reference": str(uuid.uuid4()) if reference is None else reference,
        **extra,
    }
    return client.post("/api/v1/transactions", json=body, headers=headers)
