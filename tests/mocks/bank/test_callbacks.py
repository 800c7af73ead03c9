"""The bank for real: committed payments, parallel payers, the worker's signed callbacks."""

import json
import threading
import time
import uuid
from decimal import Decimal

import pytest
from sqlalchemy.orm import sessionmaker

from chomik.jobs import JobContext
from chomik.signing import HEADER, split_secrets, verify
from mocks.bank import create_app
from mocks.bank.jobs import jobs
from mocks.bank.worker import build_worker
from tests.mocks.bank.conftest import MERCHANT, new_account, new_transaction
from tests.receiver import Receiver


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def client(committed_db, bank_settings):
    app = create_app(bank_settings)
    return app.test_client()


def pay(client, transaction_id, account_id):
    return client.post(
        f"/api/v1/transactions/{transaction_id}/pay", json={"account_id": account_id}
    )


def test_parallel_creations_with_one_reference_make_one_transaction(client, merchant):
    barrier = threading.Barrier(4)
    answers = []

    def create():
        barrier.wait()
        response = new_transaction(client, merchant, reference="same-everywhere")
        answers.append((response.status_code, response.json["id"]))

    threads = [threading.Thread(target=create) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(code for code, _ in answers) == [200, 200, 200, 201]
    assert len({tx_id for _, tx_id in answers}) == 1


def test_parallel_payments_never_overdraw_an_account(client, merchant):
    payer = new_account(client, "50.00")
    transactions = [
        new_transaction(client, merchant, amount="30.00").json["id"] for _ in range(4)
    ]
    results = []
    barrier = threading.Barrier(len(transactions))

    def pay_one(transaction_id):
        barrier.wait()
        results.append(pay(client, transaction_id, payer["id"]).json["status"])

    threads = [threading.Thread(target=pay_one, args=(t,)) for t in transactions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == ["FAILED"] * 3 + ["SUCCEEDED"]
    balances = [
        Decimal(client.get(f"/api/v1/accounts/{a}").json["balance"])
        for a in (payer["id"], MERCHANT)
    ]
    assert balances == [Decimal("20.00"), Decimal("30.00")]


def test_the_sender_job_posts_each_change_signed_with_the_bank_secret(
    client, merchant, receiver, committed_db, bank_settings
):
    payer = new_account(client, "100.00")
    tx = new_transaction(
        client, merchant, amount="12.50", reference="cb-1", callback_url=receiver.url
    ).json
    pay(client, tx["id"], payer["id"])
    client.post(f"/api/v1/transactions/{tx['id']}/refund", headers=merchant)
    sessions = sessionmaker(bind=committed_db.engine("bank"))
    send_callbacks = {job.name: job for job in jobs(bank_settings)}["send_callbacks"]
    send_callbacks.func(JobContext(bank_settings, sessions, f"bank-{uuid.uuid4()}"))
    assert len(receiver.calls) == 2
    secrets = split_secrets(bank_settings.bank_callback_secrets)
    bodies = []
    for call in receiver.calls:
        signed = verify(call.headers[HEADER], call.body, secrets, tolerance=30)
        assert signed.secret_index == 0  # signed with the first secret
        bodies.append(json.loads(call.body))
    assert [b["status"] for b in bodies] == ["SUCCEEDED", "REFUNDED"]
    assert set(bodies[0]) == {
        "event_id", "transaction_id", "reference", "status", "amount", "currency",
        "occurred_at",
    }  # fmt: skip
    assert bodies[0]["reference"] == "cb-1"
    assert bodies[0]["amount"] == "12.50"


def test_the_bank_worker_sends_callbacks_until_the_receiver_takes_them(
    client, merchant, receiver, bank_settings
):
    receiver.answers = [503]  # the first attempt is refused: the worker retries
    payer = new_account(client, "100.00")
    tx = new_transaction(client, merchant, callback_url=receiver.url).json
    pay(client, tx["id"], payer["id"])
    worker = build_worker(bank_settings)
    worker.start()
    try:
        deadline = time.monotonic() + 20
        while len(receiver.calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        worker.stop()
        worker.join()
    assert [json.loads(c.body)["transaction_id"] for c in receiver.calls] == [
        tx["id"]
    ] * 2


def test_switches_changed_at_run_time_reach_the_sender(
    client, merchant, receiver, committed_db, bank_settings
):
    payer = new_account(client, "100.00")
    sessions = sessionmaker(bind=committed_db.engine("bank"))
    send = {job.name: job for job in jobs(bank_settings)}["send_callbacks"]
    context = JobContext(bank_settings, sessions, f"bank-{uuid.uuid4()}")

    def pay_new(reference):
        tx = new_transaction(
            client, merchant, reference=reference, callback_url=receiver.url
        ).json
        pay(client, tx["id"], payer["id"])
        send.func(context)
        return tx["id"]

    client.put("/api/v1/admin/faults", json={"drop": 1.0})
    pay_new("dropped")
    assert receiver.calls == []
    client.put("/api/v1/admin/faults", json={"drop": 0.0, "duplicate": 1.0})
    twice = pay_new("twice")
    assert [json.loads(c.body)["transaction_id"] for c in receiver.calls] == [twice] * 2
    client.delete("/api/v1/admin/faults")
    once = pay_new("once")
    assert [json.loads(c.body)["transaction_id"] for c in receiver.calls][2:] == [once]
