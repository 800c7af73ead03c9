"""Contract tests: the bank client against the real bank mock, in-process."""

import datetime as dt
import json
import uuid
from decimal import Decimal

import pytest
import sqlalchemy as sa

from clients._http import MalformedResponseError
from clients.bank import (
    Account,
    AccountNotFoundError,
    BadRequestError,
    BankCallback,
    BankClient,
    BankUnavailableError,
    IllegalTransitionError,
    MerchantMismatchError,
    ReferenceConflictError,
    StatusChange,
    Transaction,
    TransactionNotFoundError,
    UnknownMerchantError,
)
from mocks.bank import create_app
from mocks.bank.settings import BankSettings
from tests.clients.wsgi import dropping, mounted

BASE = "http://bank.test"
TOKEN = "client-test-merchant"
MERCHANT = uuid.UUID("00000000-0000-4000-8000-0000000000c1")
CALLBACK = "http://127.0.0.1:17000/api/v1/callbacks/bank"


@pytest.fixture
def app(dbs, settings_for):
    settings = settings_for(
        BankSettings,
        bank_merchant_tokens=f"{TOKEN}:{MERCHANT},other-token:{uuid.uuid4()}",
        bank_public_url=BASE,
    )
    return dbs.bind_app(create_app(settings), "bank")


def client_for(app, token=TOKEN, account=MERCHANT):
    return BankClient(
        BASE, merchant_token=token, merchant_account_id=account, transport=mounted(app, BASE),
        retries=0,
    )  # fmt: skip


@pytest.fixture
def bank(app):
    client = client_for(app)
    yield client
    client.close()


def create(bank, reference="order-1", amount="25.00"):
    return bank.create_transaction(
        reference=reference, amount=Decimal(amount), currency="RUB",
        callback_url=CALLBACK,
    )  # fmt: skip


def test_a_transaction_is_typed_and_the_same_reference_returns_it_again(bank):
    first = create(bank)
    assert isinstance(first, Transaction)
    assert (first.status, first.amount, first.reference) == (
        "CREATED", Decimal("25.00"), "order-1",
    )  # fmt: skip
    assert first.pay_url == f"{BASE}/api/v1/transactions/{first.id}/pay"
    assert first.created_at.tzinfo is not None
    assert create(bank) == first
    assert bank.find_transaction("order-1") == first
    assert bank.get_transaction(first.id) == first


def test_another_amount_for_a_reference_is_a_typed_conflict(bank):
    create(bank, amount="25.00")
    with pytest.raises(ReferenceConflictError) as caught:
        create(bank, amount="26.00")
    assert caught.value.status == 409


def test_unknown_transactions_are_typed_not_found(bank):
    with pytest.raises(TransactionNotFoundError):
        bank.find_transaction("nobody")
    with pytest.raises(TransactionNotFoundError):
        bank.get_transaction(uuid.uuid4())


def test_paying_and_refunding_answer_the_new_status(bank):
    transaction = create(bank, amount="40.00")
    payer = bank.create_account(owner="buyer", balance=Decimal("100"))
    assert isinstance(payer, Account)
    assert payer.balance == Decimal("100.00")
    paid = bank.pay(transaction.id, payer.id)
    assert paid == StatusChange(transaction.id, "SUCCEEDED")
    assert bank.get_account(payer.id).balance == Decimal("60.00")
    assert bank.get_account(MERCHANT).balance == Decimal("40.00")
    with pytest.raises(IllegalTransitionError):
        bank.pay(transaction.id, payer.id)
    assert bank.refund(transaction.id) == StatusChange(transaction.id, "REFUNDED")
    assert bank.refund(transaction.id).status == "REFUNDED"
    assert bank.get_transaction(transaction.id).status == "REFUNDED"


def test_a_short_balance_fails_the_transaction(bank):
    transaction = create(bank, amount="40.00")
    payer = bank.create_account(owner="poor", balance=Decimal("1.00"))
    assert bank.pay(transaction.id, payer.id).status == "FAILED"
    with pytest.raises(IllegalTransitionError):
        bank.refund(transaction.id)


def test_unknown_accounts_are_typed_not_found(bank):
    with pytest.raises(AccountNotFoundError):
        bank.get_account(uuid.uuid4())


def test_merchant_errors_are_typed(app):
    with pytest.raises(UnknownMerchantError) as caught:
        create(client_for(app, token="wrong"))
    assert caught.value.status == 401
    with pytest.raises(MerchantMismatchError):
        create(client_for(app, token="other-token"))


def test_bad_input_is_a_bad_request(bank):
    with pytest.raises(BadRequestError) as caught:
        bank.create_transaction(
            reference="", amount=Decimal("1"), currency="RUB", callback_url=CALLBACK
        )
    assert "reference" in caught.value.problem["errors"]


def test_a_bank_refusing_work_is_a_typed_server_error(bank, app):
    app.test_client().put("/api/v1/admin/faults", json={"unavailable_for": 60})
    with pytest.raises(BankUnavailableError) as caught:
        create(bank, reference="while-down")
    assert caught.value.status == 503


def test_a_callback_body_parses_into_its_typed_form(bank, dbs):
    transaction = create(bank, amount="12.30")
    payer = bank.create_account(owner="buyer", balance=Decimal("20"))
    bank.pay(transaction.id, payer.id)
    body = dbs.session("bank").scalar(sa.text("SELECT body FROM outgoing_callbacks"))
    callback = BankCallback.from_json(json.loads(json.dumps(body)))
    assert callback.transaction_id == transaction.id
    assert (callback.status, callback.amount, callback.reference) == (
        "SUCCEEDED", Decimal("12.30"), "order-1",
    )  # fmt: skip
    assert callback.occurred_at.tzinfo == dt.UTC


@pytest.mark.parametrize("field", ["status", "amount", "reference"])
def test_an_answer_missing_a_field_is_a_malformed_response_error(app, field):
    client = client_for(dropping(app, [field]))
    try:
        with pytest.raises(MalformedResponseError) as caught:
            create(client, reference=f"malformed-{field}")
    finally:
        client.close()
    assert repr(field) in caught.value.detail
