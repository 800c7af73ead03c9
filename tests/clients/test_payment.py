"""Contract tests: the payment client against the real payment app, in-process."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal

import pytest

from apps.payment import create_app
from clients.orders import OrderStatus
from clients.payment import (
    BankUnavailableError,
    OrderNotFoundError,
    OrderNotPayableError,
    Payment,
    PaymentClient,
    PaymentNotFoundError,
    PaymentRefusedError,
    PaymentStatus,
)
from mocks.bank import create_app as create_bank_app
from mocks.bank.settings import BankSettings

# The payment test fixtures: real databases, the bank mock in-process.
from tests.apps.payment.conftest import *  # noqa: F403
from tests.apps.payment.conftest import bank_client as bank_of
from tests.clients.wsgi import mounted

BASE = "http://payment.test"


def client_for(app):
    return PaymentClient(BASE, transport=mounted(app, BASE), retries=0)


@pytest.fixture
def payments(ports, settings):
    client = client_for(create_app(settings, ports=ports))
    yield client
    client.close()


def token_of(buyer):
    return buyer.headers["Authorization"].removeprefix("Bearer ")


def test_a_start_is_typed_and_a_second_start_answers_the_same_payment(
    payments,
    buyer,
    place_order,
):
    order_id = place_order(buyer.id, total="19.99")

    first = payments.start_payment(order_id, access_token=token_of(buyer))
    again = payments.start_payment(order_id, access_token=token_of(buyer))

    assert first.created
    assert not again.created
    assert isinstance(first.payment, Payment)
    assert first.payment.status is PaymentStatus.PENDING
    assert first.payment.amount == Decimal("19.99")
    assert first.payment.pay_url
    assert first.payment.created_at.tzinfo is not None
    assert again.payment == first.payment


def test_reads_are_typed(payments, buyer, place_order):
    order_id = place_order(buyer.id)
    started = payments.start_payment(order_id, access_token=token_of(buyer)).payment

    assert payments.get_payment(started.id, access_token=token_of(buyer)) == started
    page = payments.list_payments(access_token=token_of(buyer), order_id=order_id)
    assert (page.items, page.total, page.page) == ((started,), 1, 1)


def test_problems_map_to_typed_errors(
    payments,
    buyer,
    new_buyer,
    place_order,
):
    with pytest.raises(PaymentNotFoundError):
        payments.get_payment(uuid.uuid4(), access_token=token_of(buyer))
    with pytest.raises(OrderNotFoundError):
        payments.start_payment(
            place_order(buyer.id), access_token=token_of(new_buyer())
        )
    with pytest.raises(OrderNotPayableError):
        payments.start_payment(
            place_order(buyer.id, status=OrderStatus.EXPIRED),
            access_token=token_of(buyer),
        )
    with pytest.raises(PaymentRefusedError):
        payments.start_payment(
            place_order(buyer.id, total="0.00"), access_token=token_of(buyer)
        )


def test_the_bank_away_is_a_typed_error(
    bank_settings,
    make_ports,
    settings,
    buyer,
    place_order,
):
    down = create_bank_app(
        BankSettings(**{**bank_settings.__dict__,
                        "bank_fault_unavailable_until": time.time() + 3600})
    )  # fmt: skip
    client = client_for(create_app(settings, ports=make_ports(bank_of(down))))

    with pytest.raises(BankUnavailableError):
        client.start_payment(place_order(buyer.id), access_token=token_of(buyer))
