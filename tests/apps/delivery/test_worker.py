"""The delivery worker: paid orders and carrier callbacks from Kafka, through the
kit's consumer loop, with the carrier away for a while."""

import contextlib
import json
import time
import uuid
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from apps.delivery.consumers import consumers
from apps.delivery.models import Shipment, ShipmentEvent, ShipmentStatus
from apps.delivery.worker import build_worker
from chomik.db import utcnow
from chomik.infra import free_port
from chomik.messaging.kafka import envelope_of, make_producer
from chomik.signing import sign
from chomik.worker import Worker
from clients.carrier import CarrierClient
from clients.events import (
    CARRIER_CALLBACKS,
    ORDERS_EVENTS,
    CarrierCallbackReceived,
    OrderCancelled,
    OrderDelivered,
    OrderExpired,
    OrderItem,
    OrderPaid,
    OrderPlaced,
    dlq,
)
from mocks.carrier import create_app as create_carrier_app
from tests.apps.delivery.conftest import CARRIER_SECRET, CARRIER_TOKEN
from tests.chomik.messaging_helpers import metric, read_topic, wait_until
from tests.clients.wsgi import serving
from tests.factories.delivery import AddressFactory

FAST_GROUP = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}


def test_the_worker_consumes_paid_orders_and_callbacks_and_polls(
    delivery_settings, carrier
):
    worker = build_worker(delivery_settings, carrier=carrier)
    try:
        assert worker.topics == sorted([ORDERS_EVENTS, CARRIER_CALLBACKS])
        assert set(worker.consumers) == {
            OrderPlaced, OrderPaid, OrderCancelled, OrderExpired, OrderDelivered,
            CarrierCallbackReceived.type,
        }  # fmt: skip
        assert "poll_shipments" in {job.name for job in worker.jobs}
        assert worker.with_relay
    finally:
        worker.engine.dispose()


def publish(bootstrap, *envelopes):
    producer = make_producer(bootstrap)
    for envelope in envelopes:
        topic = ORDERS_EVENTS if envelope.type == OrderPaid.type else CARRIER_CALLBACKS
        producer.send(topic, key=envelope.key.encode(), value=envelope.to_json())
    producer.flush(10)
    producer.close()


def shipments_of(engine, order_id):
    with Session(engine) as s:
        return s.scalars(sa.select(Shipment).where(Shipment.order_id == order_id)).all()


def signed_callback(shipment, status, secret=CARRIER_SECRET):
    body = json.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "shipment_id": str(shipment.carrier_shipment_id),
            "reference": str(shipment.order_id),
            "status": status,
            "occurred_at": utcnow().isoformat(),
        }
    )
    now = time.time()
    return envelope_of(
        CarrierCallbackReceived(
            str(shipment.carrier_shipment_id),
            body,
            sign(body.encode(), secret, now=now),
            str(int(now)),
        )
    )


def stranger(order_id):
    return SimpleNamespace(carrier_shipment_id=uuid.uuid4(), order_id=order_id)


def dead_letters(bootstrap, topic=CARRIER_CALLBACKS):
    return {r.key.decode() for r in read_topic(bootstrap, dlq(topic)) if r.key}


@pytest.fixture
def later():
    """Contexts entered during a test, left at its end."""
    with contextlib.ExitStack() as stack:
        yield stack


def test_an_order_paid_while_the_carrier_is_down_ships_once_it_is_back_and_moves_on(
    committed_db, delivery_settings, carrier_settings, later
):
    engine = committed_db.engine("delivery")
    address = AddressFactory.build()
    with Session(engine, expire_on_commit=False) as s, s.begin():
        s.add(address)
    order_id = uuid.uuid4()
    paid = envelope_of(
        OrderPaid(
            str(order_id),
            str(address.buyer_id),
            str(address.id),
            (OrderItem(str(uuid.uuid4()), 1),),
        )
    )
    # The carrier is away: nothing listens on its port until it is served.
    port = free_port()
    carrier = CarrierClient(
        f"http://127.0.0.1:{port}", merchant_token=CARRIER_TOKEN, retries=0, timeout=1
    )
    app = f"delivery-{uuid.uuid4().hex[:6]}"  # a group of its own
    worker = Worker(
        app, delivery_settings, consumers=consumers(delivery_settings, carrier),
        topics=[CARRIER_CALLBACKS], relay=False, kit_jobs=False,
        consumer_options=FAST_GROUP,
    )  # fmt: skip
    worker.start()
    try:
        publish(committed_db.kafka, paid, paid)  # delivered twice
        waits = f"chomik-{app}"
        wait_until(lambda: metric("consumer_outage_waits_total", group=waits) >= 2, 60)
        assert shipments_of(engine, order_id) == []
        later.enter_context(serving(create_carrier_app(carrier_settings), port))
        (shipment,) = wait_until(lambda: shipments_of(engine, order_id), 60)
        assert shipment.status == ShipmentStatus.CREATED

        # The carrier's news through the gateway's topic, sent twice.
        moved = signed_callback(shipment, "IN_TRANSIT")
        publish(committed_db.kafka, moved, moved)

        def in_transit():
            (row,) = shipments_of(engine, order_id)
            return row.status == ShipmentStatus.IN_TRANSIT

        wait_until(in_transit, 60)
        publish(committed_db.kafka, paid)  # a late redelivery: still one shipment

        # Faults of the message are dead-lettered: a forged callback, and one
        # about a shipment delivery never registered.
        forged = signed_callback(stranger(order_id), "DELIVERED", secret="forged")
        unknown = signed_callback(stranger(order_id), "DELIVERED")
        publish(committed_db.kafka, forged, unknown)
        wait_until(
            lambda: {forged.key, unknown.key} <= dead_letters(committed_db.kafka), 60
        )
    finally:
        worker.stop()
        worker.join(15)
    assert len(shipments_of(engine, order_id)) == 1
    assert carrier.find_shipment(str(order_id)).id == shipment.carrier_shipment_id
    with Session(engine) as s:
        steps = s.scalars(
            sa.select(ShipmentEvent.status)
            .where(ShipmentEvent.shipment_id == shipment.id)
            .order_by(ShipmentEvent.id)
        ).all()
        sent = s.execute(
            sa.text("SELECT type FROM outbox_events WHERE key = :key ORDER BY seq"),
            {"key": str(order_id)},
        ).scalars()
        assert list(sent) == ["shipment.created", "shipment.in_transit"]
    assert steps == [ShipmentStatus.CREATED, ShipmentStatus.IN_TRANSIT]
    # Nothing of this order was dead-lettered: the outage was waited out.
    for topic in (ORDERS_EVENTS, CARRIER_CALLBACKS):
        keys = dead_letters(committed_db.kafka, topic)
        assert str(order_id) not in keys
        assert str(shipment.carrier_shipment_id) not in keys
