"""Shipments: one per paid order at the carrier, moved forward only by its news."""

import dataclasses
import datetime as dt
import json
import time
import uuid
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from apps.delivery.consumers import consumers
from apps.delivery.errors import (
    BadMessageError,
    InvalidCallbackError,
    UnknownAddressError,
    UnknownShipmentError,
)
from apps.delivery.models import Shipment, ShipmentEvent, ShipmentStatus
from chomik.db import utcnow
from chomik.infra import free_port
from chomik.messaging.kafka import envelope_of
from chomik.signing import sign
from chomik.transient import is_outage
from clients.carrier import CarrierClient, TransportError
from clients.events import CarrierCallbackReceived, OrderItem, OrderPaid
from tests.apps.delivery.conftest import CARRIER_SECRET
from tests.factories.delivery import AddressFactory

S = ShipmentStatus


@pytest.fixture
def handlers(delivery_settings, carrier):
    return consumers(delivery_settings, carrier)


def paid(address):
    return OrderPaid(
        order_id=str(uuid.uuid4()),
        buyer_id=str(address.buyer_id),
        address_id=str(address.id),
        items=(OrderItem(str(uuid.uuid4()), 1),),
    )


def ship(session, handlers, event):
    handlers[OrderPaid](session, event)
    return session.scalars(
        sa.select(Shipment).where(Shipment.order_id == uuid.UUID(event.order_id))
    ).one()


def outbox(session, order_id):
    return (
        session.execute(
            sa.text("SELECT type FROM outbox_events WHERE key = :key ORDER BY seq"),
            {"key": str(order_id)},
        )
        .scalars()
        .all()
    )


def history(session, shipment):
    session.expire_all()
    return [
        e.status
        for e in session.scalars(
            sa.select(ShipmentEvent)
            .where(ShipmentEvent.shipment_id == shipment.id)
            .order_by(ShipmentEvent.id)
        )
    ]


def status_of(session, shipment):
    session.expire_all()
    return session.get(Shipment, shipment.id).status


def ignored(source, reason):
    labels = {"source": source, "reason": reason}
    return (
        REGISTRY.get_sample_value("delivery_shipment_news_ignored_total", labels) or 0
    )


def callback(shipment, status, *, secret=CARRIER_SECRET, signed_at=None, body=None):
    """A carrier callback as the gateway queues it: signed body, in an envelope."""
    text = body or json.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "shipment_id": str(shipment.carrier_shipment_id),
            "reference": str(shipment.order_id),
            "status": status,
            "occurred_at": utcnow().isoformat(),
        }
    )
    when = time.time() if signed_at is None else signed_at
    header = sign(text.encode(), secret, now=when)
    event = CarrierCallbackReceived(
        str(shipment.carrier_shipment_id), text, header, str(int(when))
    )
    return envelope_of(event)


def take(session, handlers, envelope):
    with session.begin_nested():  # the consumer loop's transaction
        handlers[CarrierCallbackReceived.type](session, envelope)


# --- registering -------------------------------------------------------------------


def shipments_counted(status):
    labels = {"status": status}
    return REGISTRY.get_sample_value("delivery_shipments_total", labels) or 0


def test_a_paid_order_gets_one_shipment_at_the_carrier_even_when_redelivered(
    session, handlers, carrier
):
    address = AddressFactory()
    event = paid(address)
    created = shipments_counted("CREATED")
    shipment = ship(session, handlers, event)
    again = ship(session, handlers, event)  # redelivered
    assert shipments_counted("CREATED") == created + 1
    assert again.id == shipment.id
    remote = carrier.find_shipment(event.order_id)
    assert (shipment.carrier_shipment_id, shipment.status) == (remote.id, S.CREATED)
    assert (shipment.tracking_number, shipment.tracking_url) == (
        remote.tracking_number,
        remote.tracking_url,
    )
    assert (shipment.buyer_id, shipment.address_id) == (address.buyer_id, address.id)
    assert shipment.next_check_at > utcnow()
    assert history(session, shipment) == [S.CREATED]
    assert outbox(session, event.order_id) == ["shipment.created"]


def test_a_registration_after_a_rolled_back_one_takes_the_carriers_shipment_as_it_is(
    session, handlers, carrier
):
    address = AddressFactory()
    event = paid(address)
    rolled_back = session.begin_nested()
    ship(session, handlers, event)
    rolled_back.rollback()  # the transaction did not commit
    assert session.scalar(sa.select(sa.func.count()).select_from(Shipment)) == 0
    carrier.advance(carrier.find_shipment(event.order_id).id)  # the carrier moved on
    shipment = ship(session, handlers, event)
    assert shipment.status == S.IN_TRANSIT
    assert history(session, shipment) == [S.CREATED, S.IN_TRANSIT]
    assert outbox(session, event.order_id) == [
        "shipment.created",
        "shipment.in_transit",
    ]


def test_an_address_deleted_after_paying_is_still_shipped_to(session, handlers):
    address = AddressFactory(deleted_at=utcnow())
    assert ship(session, handlers, paid(address)).address_id == address.id


def test_an_address_of_another_buyer_is_a_fault_of_the_message(session, handlers):
    event = dataclasses.replace(paid(AddressFactory()), buyer_id=str(uuid.uuid4()))
    with pytest.raises(UnknownAddressError) as caught:
        handlers[OrderPaid](session, event)
    assert isinstance(caught.value, BadMessageError)
    assert not is_outage(caught.value)
    assert session.scalar(sa.select(sa.func.count()).select_from(Shipment)) == 0


def test_a_carrier_that_does_not_answer_is_an_outage_and_registers_nothing(
    session, delivery_settings
):
    down = CarrierClient(
        f"http://127.0.0.1:{free_port()}", merchant_token="t", retries=0, timeout=1
    )
    handlers = consumers(delivery_settings, down)
    labels = {"operation": "create"}
    errors = REGISTRY.get_sample_value("delivery_carrier_errors_total", labels) or 0
    with pytest.raises(TransportError) as caught:
        handlers[OrderPaid](session, paid(AddressFactory()))
    assert is_outage(caught.value)
    assert (
        REGISTRY.get_sample_value("delivery_carrier_errors_total", labels) == errors + 1
    )
    assert session.scalar(sa.select(sa.func.count()).select_from(Shipment)) == 0


# --- callbacks -----------------------------------------------------------------------


@pytest.fixture
def shipment(session, handlers):
    return ship(session, handlers, paid(AddressFactory()))


def test_callbacks_carry_the_shipment_to_delivered_and_tell_orders(
    session, handlers, shipment
):
    moved = {s: shipments_counted(s) for s in ("IN_TRANSIT", "DELIVERED")}
    take(session, handlers, callback(shipment, "IN_TRANSIT"))
    assert status_of(session, shipment) == S.IN_TRANSIT
    take(session, handlers, callback(shipment, "DELIVERED"))
    assert {s: shipments_counted(s) - moved[s] for s in moved} == {
        "IN_TRANSIT": 1,
        "DELIVERED": 1,
    }
    assert status_of(session, shipment) == S.DELIVERED
    assert history(session, shipment) == [S.CREATED, S.IN_TRANSIT, S.DELIVERED]
    assert outbox(session, shipment.order_id) == [
        "shipment.created",
        "shipment.in_transit",
        "shipment.delivered",
    ]
    assert session.get(Shipment, shipment.id).next_check_at is None


def test_a_duplicate_callback_is_refused_as_a_replay_and_changes_nothing(
    session, handlers, shipment
):
    envelope = callback(shipment, "IN_TRANSIT")
    take(session, handlers, envelope)
    repeated = ignored("callback", "repeated")
    take(session, handlers, envelope)  # sent twice by the carrier: the same signature
    # The gateway queued it twice: a new envelope, the same signed message.
    take(session, handlers, dataclasses.replace(envelope, id=uuid.uuid4()))
    assert history(session, shipment) == [S.CREATED, S.IN_TRANSIT]
    # Refused by the replay guard before it is even compared with the shipment.
    assert ignored("callback", "repeated") == repeated
    assert seen_signatures(session) == 1
    assert outbox(session, shipment.order_id).count("shipment.in_transit") == 1


def test_the_same_status_in_a_new_callback_is_ignored_and_counted(
    session, handlers, shipment
):
    before = ignored("callback", "repeated")
    take(session, handlers, callback(shipment, "IN_TRANSIT"))
    take(session, handlers, callback(shipment, "IN_TRANSIT"))
    assert history(session, shipment) == [S.CREATED, S.IN_TRANSIT]
    assert ignored("callback", "repeated") == before + 1


def test_reordered_callbacks_end_delivered_and_the_late_one_is_counted(
    session, handlers, shipment
):
    late = callback(shipment, "IN_TRANSIT")
    before = ignored("callback", "backwards")
    take(session, handlers, callback(shipment, "DELIVERED"))
    take(session, handlers, late)
    assert status_of(session, shipment) == S.DELIVERED
    # "In transit" is filled in: the order goes PAID -> SHIPPED -> DELIVERED.
    assert history(session, shipment) == [S.CREATED, S.IN_TRANSIT, S.DELIVERED]
    assert outbox(session, shipment.order_id) == [
        "shipment.created",
        "shipment.in_transit",
        "shipment.delivered",
    ]
    assert ignored("callback", "backwards") == before + 1


def seen_signatures(session):
    return session.scalar(sa.text("SELECT count(*) FROM seen_signatures"))


@pytest.mark.parametrize(
    "forged",
    [
        {"secret": "not-the-carriers-secret"},
        {"signed_at": time.time() - 3600},  # older than the tolerance
        {"signed_at": time.time() + 3600},  # from the future
    ],
    ids=["wrong-secret", "old", "future"],
)
def test_a_callback_with_a_bad_signature_changes_nothing(
    session, handlers, shipment, forged
):
    with pytest.raises(InvalidCallbackError) as caught:
        take(session, handlers, callback(shipment, "DELIVERED", **forged))
    assert not is_outage(caught.value)
    assert status_of(session, shipment) == S.CREATED
    assert seen_signatures(session) == 0


def test_a_signature_is_checked_as_of_when_the_gateway_received_it(
    session, handlers, shipment
):
    signed = time.time() - 3600
    envelope = callback(shipment, "IN_TRANSIT", signed_at=signed)
    queued = dt.datetime.fromtimestamp(signed + 1, dt.UTC)  # the topic lagged an hour
    take(session, handlers, dataclasses.replace(envelope, occurred_at=queued))
    assert status_of(session, shipment) == S.IN_TRANSIT


def test_a_callback_about_an_unknown_shipment_changes_nothing(
    session, handlers, shipment
):
    stranger = SimpleNamespace(carrier_shipment_id=uuid.uuid4(), order_id=uuid.uuid4())
    with pytest.raises(UnknownShipmentError):
        take(session, handlers, callback(stranger, "DELIVERED"))
    assert status_of(session, shipment) == S.CREATED
    assert seen_signatures(session) == 0  # rolled back with the rest


@pytest.mark.parametrize(
    "body", ['{"shipment_id": "x"}', "[]", '{"status": "LOST"}'], ids=str
)
def test_a_signed_body_that_is_no_callback_is_a_fault_of_the_message(
    session, handlers, shipment, body
):
    if "LOST" in body:
        body = json.dumps(
            {
                "event_id": str(uuid.uuid4()),
                "shipment_id": str(shipment.carrier_shipment_id),
                "reference": str(shipment.order_id),
                "status": "LOST",
                "occurred_at": utcnow().isoformat(),
            }
        )
    with pytest.raises(InvalidCallbackError):
        take(session, handlers, callback(shipment, "", body=body))
    assert status_of(session, shipment) == S.CREATED
