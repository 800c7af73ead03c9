"""The shipment poller: the carrier asked about shipments no callback moved."""

import datetime as dt
import threading
import uuid

import pytest
import sqlalchemy as sa

from apps.delivery.jobs import delivery_jobs
from apps.delivery.models import Shipment, ShipmentStatus
from apps.delivery.settings import DeliverySettings
from chomik.db import utcnow
from chomik.infra import free_port
from chomik.jobs import JobContext
from clients.carrier import CarrierClient, ShipmentAddress
from tests.factories.delivery import ShipmentFactory

S = ShipmentStatus
ADDRESS = ShipmentAddress(
    recipient="Ala Kowalska", phone="+48123456789", country="PL", city="Kraków",
    street="Floriańska 1", postal_code="31-019",
)  # fmt: skip


def poll(settings, carrier, dbs):
    (job,) = [j for j in delivery_jobs(settings, carrier) if j.name == "poll_shipments"]
    context = JobContext(
        settings=settings,
        sessions=dbs.sessions("delivery"),
        replica_id="test",
        stopping=threading.Event(),
    )
    return job.func(context)


def at_carrier(carrier, *, steps):
    """A shipment registered at the carrier and moved on `steps` times there."""
    remote = carrier.create_shipment(reference=str(uuid.uuid4()), address=ADDRESS)
    for _ in range(steps):
        remote = carrier.advance(remote.id)
    return remote


def mirrored(remote, **fields):
    """Delivery's row of a carrier shipment, as registered (CREATED)."""
    return ShipmentFactory(
        order_id=remote.reference, carrier_shipment_id=remote.id, **fields
    )


def reread(session, shipment):
    session.expire_all()
    return session.get(Shipment, shipment.id)


@pytest.fixture
def overdue():
    return utcnow() - dt.timedelta(seconds=1)


def test_the_poller_applies_what_the_carrier_says_when_no_callback_came(
    session, dbs, delivery_settings, carrier, overdue
):
    delivered = mirrored(at_carrier(carrier, steps=2), next_check_at=overdue)
    moving = mirrored(at_carrier(carrier, steps=1), next_check_at=overdue)
    assert poll(delivery_settings, carrier, dbs)["done"] == 2
    delivered, moving = reread(session, delivered), reread(session, moving)
    assert (delivered.status, delivered.next_check_at) == (S.DELIVERED, None)
    assert moving.status == S.IN_TRANSIT
    assert moving.next_check_at > utcnow() + dt.timedelta(seconds=50)
    assert moving.claim_token is None
    types = session.execute(
        sa.text("SELECT type FROM outbox_events WHERE key = :key ORDER BY seq"),
        {"key": str(delivered.order_id)},
    ).scalars()
    assert list(types) == ["shipment.in_transit", "shipment.delivered"]


def test_a_shipment_with_recent_news_is_not_polled(
    session, dbs, delivery_settings, carrier
):
    soon = utcnow() + dt.timedelta(seconds=30)
    shipment = mirrored(at_carrier(carrier, steps=1), next_check_at=soon)
    assert poll(delivery_settings, carrier, dbs)["done"] == 0
    assert reread(session, shipment).status == S.CREATED


def test_nothing_new_at_the_carrier_only_sets_the_next_check(
    session, dbs, delivery_settings, carrier, overdue
):
    shipment = mirrored(at_carrier(carrier, steps=0), next_check_at=overdue)
    assert poll(delivery_settings, carrier, dbs)["done"] == 1
    shipment = reread(session, shipment)
    assert shipment.status == S.CREATED
    assert shipment.next_check_at > utcnow()


def test_a_carrier_that_is_down_leaves_the_shipment_due_again_later(
    session, dbs, delivery_settings, overdue
):
    shipment = ShipmentFactory(next_check_at=overdue)
    down = CarrierClient(
        f"http://127.0.0.1:{free_port()}", merchant_token="t", retries=0, timeout=1
    )
    assert poll(delivery_settings, down, dbs)["failed"] == 1
    shipment = reread(session, shipment)
    assert shipment.status == S.CREATED
    assert shipment.next_check_at > utcnow()  # the runner's retry_after
    assert shipment.claim_token is None


def test_the_poll_interval_comes_from_the_settings(settings_for, carrier):
    settings = settings_for(
        DeliverySettings, shipment_poll_interval=7.0, shipment_poll_age=90
    )
    (job,) = delivery_jobs(settings, carrier)
    assert (job.name, job.seconds, job.idle_max) == ("poll_shipments", 7.0, 90)
