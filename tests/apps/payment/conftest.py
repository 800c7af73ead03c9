"""Payment test fixtures: real payment, orders and txcoord databases (committed, as
txcoord needs), the real bank mock in-process behind the real BankClient."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal

import pytest
import sqlalchemy as sa

from apps.payment import create_app
from apps.payment.models import Payment
from apps.payment.services import Ports, build_ports
from apps.payment.settings import PaymentSettings
from chomik.db import new_metadata
from chomik.messaging.consuming import InboxEntry
from chomik.messaging.kafka import Envelope, envelope_of
from chomik.signing import sign
from clients.bank import BankClient, Transaction
from clients.events import BankCallbackReceived
from clients.orders import OrderStatus, define_order_tables
from mocks.bank import create_app as create_bank_app
from mocks.bank.settings import BankSettings
from tests.clients.wsgi import mounted
from tests.conftest import auth

# What other test packages (the client's contract tests) take from here.
__all__ = [
    "app",
    "bank",
    "bank_app",
    "bank_client",
    "bank_settings",
    "buyer",
    "client",
    "make_ports",
    "new_buyer",
    "place_order",
    "ports",
    "settings",
]

BANK = "http://bank.test"
TOKEN = "payment-test-merchant"
MERCHANT = uuid.UUID("00000000-0000-4000-8000-0000000000d1")
SECRET = "payment-test-bank-secret"
CALLBACK = "http://gateway.test/api/v1/callbacks/bank"
ORDERS = define_order_tables(new_metadata()).orders


def bank_client(bank_app, *, retries=0):
    return BankClient(
        BANK, merchant_token=TOKEN, merchant_account_id=MERCHANT,
        transport=mounted(bank_app, BANK), retries=retries,
    )  # fmt: skip


def away_bank_client():
    """A bank client over real HTTP to an address nothing listens on."""
    return BankClient(
        "http://127.0.0.1:9", merchant_token=TOKEN, merchant_account_id=MERCHANT,
        retries=0,
    )  # fmt: skip


@pytest.fixture
def bank_settings(settings_for):
    return settings_for(
        BankSettings,
        bank_merchant_tokens=f"{TOKEN}:{MERCHANT}",
        bank_callback_secrets=SECRET,
        bank_public_url=BANK,
    )


@pytest.fixture
def bank_app(committed_db, bank_settings):
    return create_bank_app(bank_settings)


@pytest.fixture
def bank(bank_app):
    client = bank_client(bank_app)
    yield client
    client.close()


@pytest.fixture
def settings(settings_for, infra):
    return settings_for(
        PaymentSettings,
        orders_database_url=infra.urls["orders"],
        txcoord_database_url=infra.urls["txcoord"],
        bank_url=BANK,
        bank_merchant_token=TOKEN,
        bank_merchant_account_id=str(MERCHANT),
        bank_callback_url=CALLBACK,
        bank_callback_secrets=SECRET,
    )


@pytest.fixture
def make_ports(committed_db, settings):
    made = []

    def make(bank, **overrides):
        chosen = settings if not overrides else _replace(settings, **overrides)
        ports = build_ports(chosen, bank=bank, check_servers=True)
        made.append(ports)
        return ports

    yield make
    for ports in made:
        for engine in ports.coordinator.participants.values():
            engine.dispose()
        ports.coordinator.log.engine.dispose()


def _replace(settings, **overrides):
    import dataclasses

    return dataclasses.replace(settings, **overrides)


@pytest.fixture
def ports(make_ports, bank) -> Ports:
    return make_ports(bank)


@pytest.fixture
def app(ports, settings):
    return create_app(settings, ports=ports)


@pytest.fixture
def client(app):
    return app.test_client()


@dataclass
class Buyer:
    id: uuid.UUID
    headers: dict[str, str]


@pytest.fixture
def new_buyer(make_token):
    def make(*roles):
        user_id = uuid.uuid4()
        return Buyer(user_id, auth(make_token(str(user_id), *(roles or ("buyer",)))))

    return make


@pytest.fixture
def buyer(new_buyer):
    return new_buyer()


@pytest.fixture
def place_order(infra):
    """Store an order in the orders database, as placing would have."""

    def place(buyer_id, *, total="42.50", status=OrderStatus.AWAITING_PAYMENT,
              expires_in=dt.timedelta(minutes=15)):  # fmt: skip
        order_id = uuid.uuid4()
        with infra.engine("orders").begin() as conn:
            conn.execute(
                sa.insert(ORDERS).values(
                    id=order_id, buyer_id=buyer_id, status=status,
                    address_id=uuid.uuid4(), currency="RUB", total=Decimal(total),
                    expires_at=dt.datetime.now(dt.UTC) + expires_in,
                )
            )  # fmt: skip
        return order_id

    return place


def order_status(infra, order_id):
    with infra.engine("orders").connect() as conn:
        return conn.scalar(sa.select(ORDERS.c.status).where(ORDERS.c.id == order_id))


def payments_of(infra, order_id):
    with infra.engine("payment").connect() as conn:
        return conn.execute(
            sa.select(Payment.__table__).where(Payment.order_id == order_id)
        ).all()


def outbox_types(infra, name):
    with infra.engine(name).connect() as conn:
        return sorted(conn.scalars(sa.text("SELECT type FROM outbox_events")))


def bank_transactions(infra):
    with infra.engine("bank").connect() as conn:
        return conn.execute(
            sa.text("SELECT id, reference, status FROM transactions")
        ).all()


def pay_at_bank(bank, transaction_id, *, balance="1000.00"):
    """A customer with money pays the transaction; the bank's answer."""
    account = bank.create_account(owner="customer", balance=Decimal(balance))
    return bank.pay(transaction_id, account.id)


def callback_body(transaction: Transaction, *, status=None, event_id=None) -> bytes:
    """A bank callback body about `transaction`, as the bank sends it."""
    return json.dumps(
        {
            "event_id": str(event_id or uuid.uuid4()),
            "transaction_id": str(transaction.id),
            "reference": transaction.reference,
            "status": status or transaction.status,
            "amount": str(transaction.amount),
            "currency": transaction.currency,
            "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
        }
    ).encode()


def queued_callback(
    body: bytes, *, secret=SECRET, signed_at=None, transaction_id=None
) -> Envelope:
    """The envelope the gateway publishes for a signed callback."""
    header = sign(body, secret, now=signed_at)
    event = BankCallbackReceived(
        transaction_id or json.loads(body)["transaction_id"], body=body.decode(),
        signature=header, timestamp=header.split(",")[0][2:],
    )  # fmt: skip
    return envelope_of(event)


def inbox_entry(envelope: Envelope) -> InboxEntry:
    return InboxEntry("chomik-payment", envelope.id, "bank.callbacks", envelope.type)


def counted(name, **labels):
    """The current value of one of payment's metrics (0 before its first count)."""
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0


def wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()
