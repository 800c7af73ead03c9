"""The bank mock over HTTP: accounts, transactions, paying, refunds, fault switches."""

import uuid
from decimal import Decimal

import pytest
import sqlalchemy as sa

from mocks.bank import create_app
from mocks.bank.settings import BankSettings
from tests.conftest import auth
from tests.mocks.bank.conftest import (
    MERCHANT,
    OTHER,
    OTHER_TOKEN,
    new_account,
    new_transaction,
)


def callbacks(session):
    return session.execute(
        sa.text("SELECT key, url, body FROM outgoing_callbacks ORDER BY id")
    ).all()


def balance(client, account_id):
    return Decimal(client.get(f"/api/v1/accounts/{account_id}").json["balance"])


def test_an_account_is_opened_with_a_test_balance(client):
    account = new_account(client, "250.50", owner="Ala")
    assert account["owner"] == "Ala"
    assert account["balance"] == "250.50"
    assert client.get(f"/api/v1/accounts/{account['id']}").json == account


@pytest.mark.parametrize("balance", ["-1.00", "1.234", 12.5, "abc", ""])
def test_a_bad_balance_is_refused(client, balance):
    response = client.post("/api/v1/accounts", json={"owner": "x", "balance": balance})
    assert response.status_code == 422
    assert "balance" in response.json["errors"]


def test_an_unknown_account_is_not_found(client):
    response = client.get(f"/api/v1/accounts/{uuid.uuid4()}")
    assert response.status_code == 404
    assert response.json["type"] == "account-not-found"


def test_a_transaction_is_created_with_a_pay_url(client, merchant):
    response = new_transaction(client, merchant, amount="30.00", reference="order-1")
    assert response.status_code == 201
    body = response.json
    assert body["status"] == "CREATED"
    assert body["amount"] == "30.00"
    assert body["reference"] == "order-1"
    assert body["currency"] == "RUB"
    assert body["pay_url"] == f"http://bank.test/api/v1/transactions/{body['id']}/pay"


def test_the_same_reference_again_answers_the_existing_transaction(client, merchant):
    first = new_transaction(client, merchant, reference="order-2")
    again = new_transaction(client, merchant, reference="order-2")
    assert again.status_code == 200
    assert again.json["id"] == first.json["id"]


def test_the_same_reference_with_another_amount_is_a_conflict(client, merchant):
    new_transaction(client, merchant, amount="30.00", reference="order-3")
    response = new_transaction(client, merchant, amount="31.00", reference="order-3")
    assert response.status_code == 409
    assert response.json["type"] == "reference-conflict"


def test_references_are_per_merchant(client, merchant):
    mine = new_transaction(client, merchant, reference="shared")
    theirs = new_transaction(
        client, auth(OTHER_TOKEN), reference="shared", merchant_account_id=str(OTHER)
    )
    assert theirs.status_code == 201
    assert theirs.json["id"] != mine.json["id"]


@pytest.mark.parametrize("headers", [{}, auth("not-a-merchant")])
def test_transactions_need_a_merchant_token(client, headers):
    response = new_transaction(client, headers)
    assert response.status_code == 401
    assert response.json["type"] == "unknown-merchant"
    assert (
        client.get("/api/v1/transactions?reference=x", headers=headers).status_code
        == 401
    )


def test_a_merchant_cannot_create_for_another_merchant_account(client):
    response = new_transaction(client, auth(OTHER_TOKEN))  # body names MERCHANT
    assert response.status_code == 403
    assert response.json["type"] == "merchant-mismatch"


@pytest.mark.parametrize(
    ("field", "value"),
    [("amount", "0.00"), ("amount", 10.5), ("currency", "rub"), ("reference", ""),
     ("callback_url", "ftp://x/y"), ("merchant_account_id", "nope")],
)  # fmt: skip
def test_a_bad_transaction_field_is_refused(client, merchant, field, value):
    response = new_transaction(client, merchant, **{field: value})
    assert response.status_code == 422
    assert field in response.json["errors"]


def test_a_transaction_is_found_by_reference_and_id_by_its_merchant_only(
    client, merchant
):
    created = new_transaction(client, merchant, reference="find-me").json
    found = client.get("/api/v1/transactions?reference=find-me", headers=merchant)
    assert found.status_code == 200
    assert found.json["id"] == created["id"]
    by_id = client.get(f"/api/v1/transactions/{created['id']}", headers=merchant)
    assert by_id.json == found.json
    other = auth(OTHER_TOKEN)
    assert (
        client.get(f"/api/v1/transactions/{created['id']}", headers=other).status_code
        == 404
    )
    missing = client.get("/api/v1/transactions?reference=find-me", headers=other)
    assert missing.status_code == 404
    assert missing.json["type"] == "transaction-not-found"


def test_paying_moves_the_money_to_the_merchant_and_queues_a_callback(
    client, merchant, session
):
    payer = new_account(client, "100.00")
    tx = new_transaction(client, merchant, amount="30.00", reference="pay-1").json
    response = client.post(
        f"/api/v1/transactions/{tx['id']}/pay", json={"account_id": payer["id"]}
    )
    assert response.status_code == 200
    assert response.json == {"id": tx["id"], "status": "SUCCEEDED"}
    assert balance(client, payer["id"]) == Decimal("70.00")
    assert balance(client, MERCHANT) == Decimal("30.00")
    (callback,) = callbacks(session)
    assert callback.key == tx["id"]
    assert callback.url == "http://127.0.0.1:17000/api/v1/callbacks/bank"
    body = callback.body
    assert {k: body[k] for k in ("transaction_id", "reference", "status", "amount")} == {
        "transaction_id": tx["id"], "reference": "pay-1", "status": "SUCCEEDED",
        "amount": "30.00",
    }  # fmt: skip
    assert body["currency"] == "RUB"
    assert body["occurred_at"]
    uuid.UUID(body["event_id"])


def test_insufficient_funds_fail_the_transaction_and_move_nothing(
    client, merchant, session
):
    payer = new_account(client, "10.00")
    tx = new_transaction(client, merchant, amount="30.00").json
    response = client.post(
        f"/api/v1/transactions/{tx['id']}/pay", json={"account_id": payer["id"]}
    )
    assert response.json["status"] == "FAILED"
    assert balance(client, payer["id"]) == Decimal("10.00")
    assert balance(client, MERCHANT) == Decimal("0.00")
    assert [c.body["status"] for c in callbacks(session)] == ["FAILED"]


def test_a_transaction_is_paid_only_once(client, merchant, session):
    payer = new_account(client, "100.00")
    tx = new_transaction(client, merchant, amount="30.00").json
    pay = f"/api/v1/transactions/{tx['id']}/pay"
    client.post(pay, json={"account_id": payer["id"]})
    again = client.post(pay, json={"account_id": payer["id"]})
    assert again.status_code == 409
    assert again.json["type"] == "illegal-transition"
    assert balance(client, payer["id"]) == Decimal("70.00")
    assert len(callbacks(session)) == 1


def test_paying_from_an_unknown_account_or_an_unknown_transaction_is_not_found(
    client, merchant
):
    tx = new_transaction(client, merchant).json
    response = client.post(
        f"/api/v1/transactions/{tx['id']}/pay", json={"account_id": str(uuid.uuid4())}
    )
    assert response.json["type"] == "account-not-found"
    payer = new_account(client)
    response = client.post(
        f"/api/v1/transactions/{uuid.uuid4()}/pay", json={"account_id": payer["id"]}
    )
    assert response.json["type"] == "transaction-not-found"


def test_a_refund_gives_the_money_back_once_and_repeats_are_the_same(
    client, merchant, session
):
    payer = new_account(client, "100.00")
    tx = new_transaction(client, merchant, amount="30.00").json
    client.post(
        f"/api/v1/transactions/{tx['id']}/pay", json={"account_id": payer["id"]}
    )
    refund = f"/api/v1/transactions/{tx['id']}/refund"
    first = client.post(refund, headers=merchant)
    again = client.post(refund, headers=merchant)
    assert first.status_code == again.status_code == 200
    assert first.json == again.json == {"id": tx["id"], "status": "REFUNDED"}
    assert balance(client, payer["id"]) == Decimal("100.00")
    assert balance(client, MERCHANT) == Decimal("0.00")
    events = [c.body for c in callbacks(session)]
    assert [e["status"] for e in events] == ["SUCCEEDED", "REFUNDED"]
    assert events[0]["event_id"] != events[1]["event_id"]


def test_an_unpaid_transaction_cannot_be_refunded(client, merchant):
    tx = new_transaction(client, merchant).json
    response = client.post(f"/api/v1/transactions/{tx['id']}/refund", headers=merchant)
    assert response.status_code == 409
    other = client.post(
        f"/api/v1/transactions/{tx['id']}/refund", headers=auth(OTHER_TOKEN)
    )
    assert other.status_code == 404


def test_the_unavailable_switch_answers_503_until_it_ends(client, merchant):
    switched = client.put("/api/v1/admin/faults", json={"unavailable_for": 60})
    assert switched.status_code == 200
    assert switched.json["unavailable_until"] > 0
    response = new_transaction(client, merchant, reference="while-down")
    assert response.status_code == 503
    assert response.json["type"] == "bank-unavailable"
    assert int(response.headers["Retry-After"]) >= 1
    client.put("/api/v1/admin/faults", json={"unavailable_for": 0})
    assert new_transaction(client, merchant, reference="while-down").status_code == 201


def test_fault_switches_are_shown_changed_and_reset(client, bank_settings):
    assert client.get("/api/v1/admin/faults").json["drop"] == 0.0
    changed = client.put("/api/v1/admin/faults", json={"drop": 0.5, "delay": 2})
    assert (changed.json["drop"], changed.json["delay"]) == (0.5, 2.0)
    assert client.put("/api/v1/admin/faults", json={"drop": 2}).status_code == 422
    assert client.delete("/api/v1/admin/faults").json["drop"] == 0.0


def test_the_settings_set_the_faults(settings_for):
    settings = settings_for(
        BankSettings, bank_fault_drop=0.25, bank_fault_unavailable_until=5.0
    )
    assert settings.faults.drop == 0.25
    assert settings.faults.unavailable_until == 5.0


def test_the_fault_switches_do_not_exist_in_production(dbs, bank_settings):
    settings = bank_settings.replace(
        environment="production",
        service_token_secret="a-real-production-service-secret-0123456789",
    )
    app = dbs.bind_app(create_app(settings), "bank")
    client = app.test_client()
    assert client.get("/api/v1/admin/faults").status_code == 404
    assert client.put("/api/v1/admin/faults", json={"drop": 1}).status_code == 404


def test_the_merchants_own_account_cannot_pay_and_nothing_changes(
    client, merchant, session
):
    earned = new_transaction(client, merchant, amount="30.00", reference="e").json
    payer = new_account(client, "100.00")
    client.post(
        f"/api/v1/transactions/{earned['id']}/pay", json={"account_id": payer["id"]}
    )
    tx = new_transaction(client, merchant, amount="20.00", reference="self").json
    pay = f"/api/v1/transactions/{tx['id']}/pay"
    response = client.post(pay, json={"account_id": MERCHANT})
    assert response.status_code == 422
    assert response.content_type == "application/problem+json"
    assert response.json["type"] == "merchant-pays-itself"
    assert "account_id" in response.json["errors"]
    assert balance(client, MERCHANT) == Decimal("30.00")
    shown = client.get(f"/api/v1/transactions/{tx['id']}", headers=merchant).json
    assert shown["status"] == "CREATED"
    assert len(callbacks(session)) == 1  # the first payment's only
    # a customer can still pay it
    assert client.post(pay, json={"account_id": payer["id"]}).json["status"] == (
        "SUCCEEDED"
    )
    assert balance(client, MERCHANT) == Decimal("50.00")
