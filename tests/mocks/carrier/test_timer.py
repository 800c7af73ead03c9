"""The carrier for real: the status timer, and the worker's signed callbacks."""

import dataclasses
import datetime as dt
import json
import time
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from chomik.jobs import JobContext
from chomik.signing import HEADER, split_secrets, verify
from mocks.carrier import create_app
from mocks.carrier.jobs import advance_due_shipments
from mocks.carrier.models import Shipment
from mocks.carrier.services import TIMER_CHANNEL
from mocks.carrier.worker import build_worker
from tests.chomik.jobs_helpers import wake_ups
from tests.mocks.carrier.conftest import new_shipment
from tests.receiver import Receiver


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def timed_settings(carrier_settings, receiver):
    return carrier_settings.replace(
        carrier_step_seconds=0.2, carrier_callback_url=receiver.url
    )


@pytest.fixture
def client(committed_db, timed_settings):
    return create_app(timed_settings).test_client()


def status(client, merchant, shipment_id):
    return client.get(f"/api/v1/shipments/{shipment_id}", headers=merchant).json[
        "status"
    ]


def test_the_timer_moves_a_shipment_one_step_per_interval(
    client, merchant, committed_db, timed_settings
):
    # The step is long and made due by hand: a slow machine cannot tick twice.
    step = dt.timedelta(minutes=5)
    shipment = new_shipment(client, merchant).json
    engine = committed_db.engine("carrier")
    context = JobContext(timed_settings, sessionmaker(bind=engine), "t")
    job = advance_due_shipments(step)

    def due_in(delay):
        with engine.begin() as conn:
            conn.execute(
                sa.update(Shipment)
                .where(Shipment.id == uuid.UUID(shipment["id"]))
                .values(next_step_at=sa.func.now() + delay)
            )

    def next_step_in():
        with engine.connect() as conn:
            return conn.scalar(
                sa.select(Shipment.next_step_at - sa.func.now()).where(
                    Shipment.id == uuid.UUID(shipment["id"])
                )
            )

    due_in(step)  # it was made with the settings' step of 0.2 s
    job.func(context)
    assert status(client, merchant, shipment["id"]) == "CREATED"  # not due yet
    due_in(-dt.timedelta(seconds=1))
    job.func(context)
    assert status(client, merchant, shipment["id"]) == "IN_TRANSIT"
    assert step - dt.timedelta(seconds=30) < next_step_in() <= step
    job.func(context)
    assert status(client, merchant, shipment["id"]) == "IN_TRANSIT"  # one step
    due_in(-dt.timedelta(seconds=1))
    job.func(context)
    job.func(context)
    assert status(client, merchant, shipment["id"]) == "DELIVERED"
    assert next_step_in() is None  # the last step: the timer is done with it


def test_the_carrier_worker_delivers_and_sends_signed_callbacks_in_order(
    client, merchant, receiver, timed_settings
):
    shipment = new_shipment(client, merchant, reference="order-77").json
    worker = build_worker(timed_settings)
    worker.start()
    try:
        deadline = time.monotonic() + 20
        while len(receiver.calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        worker.stop()
        worker.join()
    secrets = split_secrets(timed_settings.carrier_callback_secrets)
    bodies = []
    for call in receiver.calls:
        verify(call.headers[HEADER], call.body, secrets, tolerance=30)
        bodies.append(json.loads(call.body))
    assert [b["status"] for b in bodies] == ["IN_TRANSIT", "DELIVERED"]
    assert {b["shipment_id"] for b in bodies} == {shipment["id"]}
    assert {b["reference"] for b in bodies} == {"order-77"}
    occurred = [dt.datetime.fromisoformat(b["occurred_at"]) for b in bodies]
    assert occurred[0] < occurred[1]


def test_duplicated_and_reordered_callbacks_keep_their_event_ids(
    client, merchant, receiver, timed_settings
):
    client.put("/api/v1/admin/faults", json={"duplicate": 1.0, "reorder": 1.0})
    new_shipment(client, merchant, reference="order-78")
    worker = build_worker(timed_settings)
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while len(receiver.calls) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        worker.stop()
        worker.join()
    bodies = [json.loads(call.body) for call in receiver.calls]
    assert [b["status"] for b in bodies] == [
        "DELIVERED", "DELIVERED", "IN_TRANSIT", "IN_TRANSIT",
    ]  # fmt: skip
    assert len({b["event_id"] for b in bodies}) == 2


def test_advancing_by_hand_takes_the_timer_claim_so_no_step_is_taken_twice(
    client, merchant, committed_db, timed_settings
):
    shipment = new_shipment(client, merchant).json
    sessions = sessionmaker(bind=committed_db.engine("carrier"))
    context = JobContext(timed_settings, sessions, "t")
    job = advance_due_shipments(dt.timedelta(seconds=0.2))
    time.sleep(0.25)

    def hand_first(session, row):
        # The shipment is moved by hand after the timer claimed it.
        client.post(f"/api/v1/shipments/{row.id}/advance")
        return timer_step(session, row)

    timer_step = job.func.handle
    counts = dataclasses.replace(job.func, handle=hand_first)(context)
    assert counts["stale"] == 1
    assert status(client, merchant, shipment["id"]) == "IN_TRANSIT"


def test_a_new_timer_or_a_step_by_hand_wakes_the_idle_timer(
    client, merchant, committed_db
):
    job = advance_due_shipments(dt.timedelta(seconds=5))
    assert job.wake_channel == TIMER_CHANNEL
    with wake_ups(committed_db.engine("carrier"), TIMER_CHANNEL) as woken:
        shipment = new_shipment(client, merchant, reference="order-90").json
        assert woken() == 1, "a new shipment starts its timer"
        new_shipment(client, merchant, reference="order-90")
        assert woken() == 0, "the same shipment again starts nothing"
        client.post(f"/api/v1/shipments/{shipment['id']}/advance")
        assert woken() == 1, "IN_TRANSIT: the timer runs on to DELIVERED"
        client.post(f"/api/v1/shipments/{shipment['id']}/advance")
        assert woken() == 0, "DELIVERED: no timer left"
