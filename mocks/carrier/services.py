"""The carrier's rules: registering shipments and moving them on to the door.

A shipment moves `CREATED → IN_TRANSIT → DELIVERED`, one step per timer tick or per
`advance` call. Every step queues a signed callback in the same transaction
(`chomik.webhooks`); its `event_id` is derived from the shipment and the status, so
a step announced again carries the same one.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from chomik.db import utcnow
from chomik.jobs import notify_job
from chomik.webhooks import Faults, current_faults, enqueue_callback
from mocks.carrier.errors import (
    CarrierUnavailableError,
    CountryNotServedError,
    IllegalTransitionError,
    ShipmentNotFoundError,
)
from mocks.carrier.models import NEXT_STATUS, Shipment, ShipmentStatus

EVENT_NAMESPACE = uuid.UUID("c4a7e0f2-61b3-4d8e-9f20-3a5b7c9d1e42")
# Wakes the status timer (`mocks.carrier.jobs`) when a shipment's timer starts.
TIMER_CHANNEL = "carrier_shipment_timers"


@dataclass(frozen=True)
class NewShipment:
    """What a merchant registers."""

    merchant: str
    reference: str
    address: Mapping[str, Any]
    callback_url: str


def refuse_if_unavailable(session: Session, defaults: Faults) -> None:
    """Answer 503 while the `unavailable_until` fault switch is on."""
    faults = current_faults(session, defaults)
    if faults.unavailable():
        wait = max(1, int(faults.unavailable_until - utcnow().timestamp()))
        raise CarrierUnavailableError(headers={"Retry-After": str(wait)})


def _tracking_number() -> str:
    return "CH" + "".join(secrets.choice("0123456789") for _ in range(12))


def create_shipment(
    session: Session,
    request: NewShipment,
    *,
    countries: frozenset[str],
    step: dt.timedelta | None,
) -> tuple[Shipment, bool]:
    """Register a shipment, or return the merchant's one with this reference.

    Idempotent by (merchant, reference), also between concurrent calls (the insert
    skips on the unique key). `step` starts the timer (None: only `advance` moves
    it). Returns the shipment and whether it was created now.
    """
    country = str(request.address["country"]).upper()
    if country not in countries:
        raise CountryNotServedError(country)
    now = utcnow()
    inserted = session.scalar(
        insert(Shipment)
        .values(
            id=uuid.uuid4(),
            merchant=request.merchant,
            reference=request.reference,
            tracking_number=_tracking_number(),
            address=dict(request.address),
            callback_url=request.callback_url,
            status=ShipmentStatus.CREATED,
            next_step_at=None if step is None else now + step,
        )
        .on_conflict_do_nothing(constraint="uq_shipments_merchant_reference")
        .returning(Shipment.id)
    )
    if inserted is not None and step is not None:
        notify_job(session, TIMER_CHANNEL)
    shipment = find_shipment(
        session, merchant=request.merchant, reference=request.reference
    )
    return shipment, inserted is not None


def find_shipment(session: Session, *, merchant: str, reference: str) -> Shipment:
    """The merchant's shipment with this reference, or `ShipmentNotFoundError`."""
    shipment = session.scalar(
        sa.select(Shipment).where(
            Shipment.merchant == merchant, Shipment.reference == reference
        )
    )
    if shipment is None:
        raise ShipmentNotFoundError(reference=reference)
    return shipment


def access_shipment(
    session: Session, *, merchant: str | None, shipment_id: uuid.UUID
) -> Shipment:
    """The shipment (of `merchant`, unless None); another merchant's is not found."""
    shipment = session.get(Shipment, shipment_id)
    if shipment is None or merchant not in (None, shipment.merchant):
        raise ShipmentNotFoundError(shipment_id=str(shipment_id))
    return shipment


def track_shipment(session: Session, tracking_number: str) -> Shipment:
    """The shipment with this tracking number (what a customer may look up)."""
    shipment = session.scalar(
        sa.select(Shipment).where(Shipment.tracking_number == tracking_number)
    )
    if shipment is None:
        raise ShipmentNotFoundError(tracking_number=tracking_number)
    return shipment


def advance_shipment(
    session: Session, *, shipment_id: uuid.UUID, step: dt.timedelta | None
) -> Shipment:
    """Move a shipment one status on now (tests); a delivered one is a 409.

    Locks the shipment row and takes the timer's claim away, so a timer run that
    claimed it meanwhile is rolled back instead of moving it a second step.
    """
    shipment = session.get(
        Shipment, shipment_id, with_for_update=True, populate_existing=True
    )
    if shipment is None:
        raise ShipmentNotFoundError(shipment_id=str(shipment_id))
    if shipment.status not in NEXT_STATUS:
        raise IllegalTransitionError(
            f"the shipment is {shipment.status.value}",
            shipment_status=shipment.status.value,
        )
    shipment.claim_token = None  # a timer run holding it now must not step it too
    _step(session, shipment, step)
    if shipment.next_step_at is not None:
        notify_job(session, TIMER_CHANNEL)
    return shipment


def step_due_shipment(
    session: Session, *, shipment_id: uuid.UUID, step: dt.timedelta
) -> dt.datetime | None:
    """The timer's move of one claimed shipment; return when it is due again.

    Runs in the claimed row's transaction (`chomik.jobs.claimed`): a shipment moved
    by hand meanwhile has lost the claim, so this move is rolled back.
    """
    shipment = session.get(
        Shipment, shipment_id, with_for_update=True, populate_existing=True
    )
    if shipment is None or shipment.status not in NEXT_STATUS:
        return None
    _step(session, shipment, step)
    return shipment.next_step_at


def _step(session: Session, shipment: Shipment, step: dt.timedelta | None) -> None:
    """Set the next status, queue its callback and set the timer for the one after."""
    status = NEXT_STATUS[shipment.status]
    now = utcnow()
    shipment.status = status
    shipment.updated_at = now
    more = status in NEXT_STATUS and step is not None
    shipment.next_step_at = now + step if more and step is not None else None
    session.flush()
    event_id = uuid.uuid5(EVENT_NAMESPACE, f"{shipment.id}:{status.value}")
    payload = {
        "event_id": str(event_id),
        "shipment_id": str(shipment.id),
        "reference": shipment.reference,
        "status": status.value,
        "occurred_at": now.isoformat(),
    }
    enqueue_callback(
        session, shipment.callback_url, payload, key=str(shipment.id), event_id=event_id
    )
