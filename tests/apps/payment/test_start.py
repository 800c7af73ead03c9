"""Starting a payment: claim, the bank, one two-phase commit over both databases."""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from decimal import Decimal

import pytest
import sqlalchemy as sa

from apps.payment import create_app
from apps.payment.services.starting import CLAIM_ATTEMPTS
from clients.bank import BankClient
from clients.orders import OrderStatus
from mocks.bank import create_app as create_bank_app
from mocks.bank.settings import BankSettings
from tests.apps.payment.conftest import (
    BANK,
    MERCHANT,
    ORDERS,
    TOKEN,
    bank_client,
    bank_transactions,
    order_status,
    outbox_types,
    payments_of,
)
from tests.clients.wsgi import mounted


def start(client, buyer, order_id):
    return client.post(f"/api/v1/orders/{order_id}/payment", headers=buyer.headers)


def test_a_start_opens_the_bank_transaction_and_moves_both_databases_at_once(
    client, buyer, place_order, infra, bank
):
    order_id = place_order(buyer.id, total="42.50")

    response = start(client, buyer, order_id)

    assert response.status_code == 201, response.json
    payment = response.json
    assert (payment["status"], payment["amount"], payment["currency"]) == (
        "PENDING", "42.50", "RUB",
    )  # fmt: skip
    assert payment["order_id"] == str(order_id)
    (transaction,) = bank_transactions(infra)
    assert transaction.reference == payment["id"]
    assert (
        payment["pay_url"]
        == f"http://bank.test/api/v1/transactions/{transaction.id}/pay"
    )
    assert order_status(infra, order_id) is OrderStatus.PAYMENT_PENDING
    (row,) = payments_of(infra, order_id)
    assert row.bank_transaction_id == transaction.id
    assert row.amount == Decimal("42.50")
    assert row.next_check_at is not None
    assert outbox_types(infra, "payment") == ["payment.started"]
    assert outbox_types(infra, "orders") == ["order.payment_pending"]


def test_an_open_payment_is_answered_again_never_a_second_one(
    client, buyer, place_order, infra
):
    order_id = place_order(buyer.id)
    first = start(client, buyer, order_id)
    again = start(client, buyer, order_id)

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json == first.json
    assert len(bank_transactions(infra)) == 1
    assert len(payments_of(infra, order_id)) == 1


def test_two_parallel_starts_make_one_bank_transaction_and_one_payment(
    app, buyer, place_order, infra
):
    order_id = place_order(buyer.id)
    answers = []
    barrier = threading.Barrier(4)

    def run():
        barrier.wait()
        answers.append(start(app.test_client(), buyer, order_id))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(a.status_code for a in answers) == [200, 200, 200, 201]
    assert len({a.json["id"] for a in answers}) == 1
    assert len(bank_transactions(infra)) == 1
    (payment,) = payments_of(infra, order_id)
    assert payment.status == "PENDING"
    assert outbox_types(infra, "orders") == ["order.payment_pending"]


def test_a_start_whose_shared_claim_was_given_back_claims_anew_and_opens_the_payment(
    start_while_the_bank_answers, buyer, place_order, infra
):
    # A parallel start shared this start's claim, its bank call failed, and it
    # gave the claim back while this start's own bank call went through.
    order_id = place_order(buyer.id)

    response = start_while_the_bank_answers(order_id, GIVE_THE_CLAIM_BACK)

    assert response.status_code == 201, response.json
    (payment,) = payments_of(infra, order_id)
    assert payment.status == "PENDING"
    assert str(payment.id) == response.json["id"]
    # The given-back claim's bank transaction stays unpaid: its pay_url never left.
    handed_out, orphan = sorted(
        bank_transactions(infra), key=lambda t: t.reference != str(payment.id)
    )
    assert f"/{handed_out.id}/" in response.json["pay_url"]
    assert orphan.status == "CREATED"
    assert order_status(infra, order_id) is OrderStatus.PAYMENT_PENDING
    assert outbox_types(infra, "orders") == ["order.payment_pending"]


def test_a_start_whose_shared_claim_ended_meanwhile_is_a_409_not_a_second_payment(
    start_while_the_bank_answers, buyer, place_order, infra
):
    # The sibling start opened the payment and it failed before this start's
    # bank call came back: the buyer did not ask for another one.
    order_id = place_order(buyer.id)

    response = start_while_the_bank_answers(
        order_id, "UPDATE payments SET status = 'FAILED' WHERE status = 'STARTING'"
    )

    assert response.status_code == 409, response.json
    assert response.json["type"] == "order-not-payable"
    assert [p.status for p in payments_of(infra, order_id)] == ["FAILED"]
    assert outbox_types(infra, "orders") == []


def test_a_start_whose_claims_keep_being_given_back_is_a_503_and_stores_nothing(
    start_while_the_bank_answers, buyer, place_order, infra
):
    order_id = place_order(buyer.id)

    response = start_while_the_bank_answers(
        order_id, GIVE_THE_CLAIM_BACK, calls=CLAIM_ATTEMPTS
    )

    assert response.status_code == 503, response.json
    assert response.json["type"] == "bank-unavailable"
    assert payments_of(infra, order_id) == []
    transactions = bank_transactions(infra)
    assert len(transactions) == CLAIM_ATTEMPTS
    assert {t.status for t in transactions} == {"CREATED"}  # none handed out
    assert order_status(infra, order_id) is OrderStatus.AWAITING_PAYMENT


def test_the_bank_away_answers_503_and_changes_nothing(
    settings_for, bank_settings, make_ports, settings, buyer, place_order, infra
):
    down = create_bank_app(
        BankSettings(**{**bank_settings.__dict__,
                        "bank_fault_unavailable_until": time.time() + 3600})
    )  # fmt: skip
    app = create_app(settings, ports=make_ports(bank_client(down)))
    order_id = place_order(buyer.id)

    response = start(app.test_client(), buyer, order_id)

    assert response.status_code == 503, response.json
    assert response.json["type"] == "bank-unavailable"
    assert response.headers["Retry-After"]
    assert payments_of(infra, order_id) == []
    assert order_status(infra, order_id) is OrderStatus.AWAITING_PAYMENT
    assert outbox_types(infra, "orders") == []


@pytest.mark.parametrize(
    "status", [OrderStatus.EXPIRED, OrderStatus.CANCELLED, OrderStatus.PAID]
)
def test_an_order_that_cannot_be_paid_is_a_409(
    client, buyer, place_order, infra, status
):
    order_id = place_order(buyer.id, status=status)

    response = start(client, buyer, order_id)

    assert response.status_code == 409, response.json
    assert response.json["type"] == "order-not-payable"
    assert payments_of(infra, order_id) == []
    assert bank_transactions(infra) == []


@pytest.mark.parametrize(
    "status", [OrderStatus.AWAITING_PAYMENT, OrderStatus.PAYMENT_FAILED]
)
def test_an_order_past_its_deadline_is_a_409_before_the_expiry_job_gets_to_it(
    client, buyer, place_order, infra, status
):
    # The expiry job has not moved it yet: the order still looks payable.
    order_id = place_order(buyer.id, status=status, expires_in=-dt.timedelta(seconds=1))

    response = start(client, buyer, order_id)

    assert response.status_code == 409, response.json
    assert response.json["type"] == "order-not-payable"
    assert response.json["order_status"] == status.value
    assert "deadline" in response.json["detail"]
    assert payments_of(infra, order_id) == []
    assert bank_transactions(infra) == []
    assert order_status(infra, order_id) is status
    assert outbox_types(infra, "orders") == []


def test_a_deadline_passing_while_the_bank_answers_is_a_409_and_no_money_moves(
    make_ports, bank_app, settings, buyer, place_order, infra
):
    order_id = place_order(buyer.id)

    bank = bank_doing_meanwhile(bank_app, lambda: pass_deadline(infra, order_id))
    app = create_app(settings, ports=make_ports(bank))

    response = start(app.test_client(), buyer, order_id)

    assert response.status_code == 409, response.json
    assert response.json["type"] == "order-not-payable"
    assert response.json["order_status"] == "AWAITING_PAYMENT"
    assert "deadline" in response.json["detail"]
    assert payments_of(infra, order_id) == []  # the claim was given back
    (transaction,) = bank_transactions(infra)
    assert transaction.status == "CREATED"  # never handed out, never paid
    assert order_status(infra, order_id) is OrderStatus.AWAITING_PAYMENT
    assert outbox_types(infra, "payment") == []
    assert outbox_types(infra, "orders") == []


def test_a_payment_started_in_time_is_answered_again_after_the_deadline(
    client, buyer, place_order, infra
):
    order_id = place_order(buyer.id)
    first = start(client, buyer, order_id)
    pass_deadline(infra, order_id)

    again = start(client, buyer, order_id)

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json == first.json


# What a sibling start does when its bank call failed.
GIVE_THE_CLAIM_BACK = "DELETE FROM payments WHERE status = 'STARTING'"


@pytest.fixture
def start_while_the_bank_answers(make_ports, bank_app, settings, buyer, infra):
    """Start the buyer's payment; `statement` runs on the payment database meanwhile.

    It runs while the bank answers each of the start's first `calls` calls.
    """

    def run(order_id, statement, *, calls=1):
        def meanwhile():
            with infra.engine("payment").begin() as conn:
                conn.execute(sa.text(statement))

        bank = bank_doing_meanwhile(bank_app, meanwhile, calls=calls)
        app = create_app(settings, ports=make_ports(bank))
        return start(app.test_client(), buyer, order_id)

    return run


def bank_doing_meanwhile(bank_app, meanwhile, *, calls=1):
    """The real bank client; `meanwhile` happens while it answers its first `calls`."""

    class Bank(BankClient):
        answered = 0

        def create_transaction(self, **fields):
            transaction = super().create_transaction(**fields)
            self.answered += 1
            if self.answered <= calls:
                meanwhile()
            return transaction

    return Bank(
        BANK, merchant_token=TOKEN, merchant_account_id=MERCHANT,
        transport=mounted(bank_app, BANK), retries=0,
    )  # fmt: skip


def pass_deadline(infra, order_id):
    """The order's deadline passed a second ago; the expiry job did not run."""
    with infra.engine("orders").begin() as conn:
        conn.execute(
            sa.update(ORDERS)
            .where(ORDERS.c.id == order_id)
            .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )


def test_someone_elses_order_is_not_found(client, buyer, new_buyer, place_order, infra):
    order_id = place_order(buyer.id)

    assert start(client, new_buyer(), order_id).status_code == 404
    assert start(client, buyer, uuid.uuid4()).status_code == 404
    assert payments_of(infra, order_id) == []


def test_a_failed_payment_may_be_tried_again(client, buyer, place_order, infra):
    order_id = place_order(buyer.id, status=OrderStatus.PAYMENT_FAILED)

    response = start(client, buyer, order_id)

    assert response.status_code == 201, response.json
    assert order_status(infra, order_id) is OrderStatus.PAYMENT_PENDING


@pytest.mark.parametrize("total", ["0.00", "19999999999.98"])
def test_an_amount_the_bank_refuses_is_a_422_and_leaves_no_claim(
    client, buyer, place_order, infra, total
):
    # Orders no longer places such an order; one placed before that still exists.
    order_id = place_order(buyer.id, total=total)

    first = start(client, buyer, order_id)
    again = start(client, buyer, order_id)

    for response in (first, again):
        assert response.status_code == 422, response.json
        assert response.json["type"] == "payment-refused"
        assert (response.json["amount"], response.json["currency"]) == (total, "RUB")
    assert payments_of(infra, order_id) == []
    assert bank_transactions(infra) == []
    assert order_status(infra, order_id) is OrderStatus.AWAITING_PAYMENT
    assert outbox_types(infra, "payment") == []
    assert outbox_types(infra, "orders") == []


def test_a_bank_refusing_our_merchant_is_a_500_and_leaves_no_claim(
    make_ports, bank_app, settings, buyer, place_order, infra
):
    refused = BankClient(
        "http://bank.test", merchant_token="not-ours", merchant_account_id=uuid.uuid4(),
        transport=mounted(bank_app, "http://bank.test"), retries=0,
    )  # fmt: skip
    app = create_app(settings, ports=make_ports(refused))
    order_id = place_order(buyer.id)

    response = start(app.test_client(), buyer, order_id)

    assert response.status_code == 500, response.json
    assert payments_of(infra, order_id) == []
    assert order_status(infra, order_id) is OrderStatus.AWAITING_PAYMENT


def test_a_bank_refusing_our_callback_url_is_a_500_not_the_buyers_fault(
    make_ports, bank_app, settings, buyer, place_order, infra
):
    # A 422 naming a field of ours, not the amount: a setting to mend, not a
    # payment the buyer could change.
    app = create_app(
        settings,
        ports=make_ports(bank_client(bank_app), bank_callback_url="not a url"),
    )
    order_id = place_order(buyer.id)

    response = start(app.test_client(), buyer, order_id)

    assert response.status_code == 500, response.json
    assert payments_of(infra, order_id) == []
