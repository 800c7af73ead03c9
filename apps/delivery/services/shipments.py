"""Shipments: one per paid order, registered with the carrier, followed to the door.

The carrier's news comes two ways, a signed callback (through the gateway and
`carrier.callbacks`) or the poller asking it; both end in `apply_carrier_news`,
which moves a shipment forward only and emits what orders needs.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from apps.delivery import states
from apps.delivery.errors import (
    InvalidCallbackError,
    ShipmentNotFoundError,
    UnknownAddressError,
    UnknownShipmentError,
)
from apps.delivery.metrics import CARRIER_ERRORS, SHIPMENT_NEWS_IGNORED, SHIPMENTS
from apps.delivery.models import Address, Shipment, ShipmentEvent, ShipmentStatus
from chomik.auth import Principal, user_uuid
from chomik.db import Page, paginate, utcnow
from chomik.messaging.kafka import Envelope, Event
from chomik.messaging.outbox import emit
from chomik.signing import SignatureError, remember_signature, verify
from chomik.transient import TransientError
from clients.carrier import CarrierCallback, CarrierClient, ShipmentAddress
from clients.events import (
    CarrierCallbackReceived,
    ShipmentCreated,
    ShipmentDelivered,
    ShipmentInTransit,
)


@dataclass(frozen=True)
class CarrierNews:
    """What the carrier says of one of its shipments: a status, as of when."""

    carrier_shipment_id: uuid.UUID
    status: str
    at: dt.datetime
    source: str  # callback | poll | registration: the metric's label


@dataclass(frozen=True)
class StatusChange:
    """One status a shipment reached, as shown in its history."""

    status: ShipmentStatus
    at: dt.datetime


@dataclass(frozen=True)
class ShipmentView:
    """A shipment as its buyer and admins see it."""

    id: uuid.UUID
    order_id: uuid.UUID
    status: ShipmentStatus
    tracking_number: str
    tracking_url: str
    events: tuple[StatusChange, ...]
    created_at: dt.datetime
    updated_at: dt.datetime


# --- registering -------------------------------------------------------------------


def register_shipment(
    session: Session,
    *,
    order_id: uuid.UUID,
    buyer_id: uuid.UUID,
    address_id: uuid.UUID,
    carrier: CarrierClient,
    poll_age: dt.timedelta,
) -> Shipment:
    """Register the paid order's shipment with the carrier, once; emit shipment.created.

    The carrier's reference is the order id, so a call repeated after a lost
    answer or a rolled-back transaction gets the same shipment back. The address
    is read deleted or not: the buyer may have removed it since paying. While
    the carrier is down its client raises a `TransientError` (the caller waits).
    """
    existing = session.scalars(
        sa.select(Shipment).where(Shipment.order_id == order_id)
    ).one_or_none()
    if existing is not None:
        return existing
    address = session.get(Address, address_id)
    if address is None or address.buyer_id != buyer_id:
        raise UnknownAddressError(f"order {order_id}: no address {address_id}")
    with _counting_errors("create"):
        remote = carrier.create_shipment(
            reference=str(order_id), address=_carrier_address(address)
        )
    shipment = Shipment(
        order_id=order_id,
        buyer_id=buyer_id,
        address_id=address_id,
        status=ShipmentStatus.CREATED,
        carrier_shipment_id=remote.id,
        tracking_number=remote.tracking_number,
        tracking_url=remote.tracking_url,
        next_check_at=utcnow() + poll_age,
    )
    session.add(shipment)
    session.flush()
    session.add(
        ShipmentEvent(
            shipment_id=shipment.id, status=ShipmentStatus.CREATED, at=remote.created_at
        )
    )
    emit(session, _created_event(shipment))
    SHIPMENTS.labels(ShipmentStatus.CREATED.value).inc()
    if remote.status != ShipmentStatus.CREATED:
        # Registered before, in a transaction that did not commit: the carrier's
        # shipment may be further along already.
        news = CarrierNews(remote.id, remote.status, remote.updated_at, "registration")
        _advance(session, shipment, news, poll_age=poll_age)
    return shipment


@contextmanager
def _counting_errors(operation: str) -> Iterator[None]:
    """Count a call to the carrier that fails for now (the caller waits it out)."""
    try:
        yield
    except TransientError:
        CARRIER_ERRORS.labels(operation).inc()
        raise


def _carrier_address(address: Address) -> ShipmentAddress:
    return ShipmentAddress(
        recipient=address.recipient,
        phone=address.phone,
        country=address.country,
        city=address.city,
        street=address.street,
        postal_code=address.postal_code,
    )


def _created_event(shipment: Shipment) -> ShipmentCreated:
    return ShipmentCreated(
        shipment_id=str(shipment.id),
        order_id=str(shipment.order_id),
        buyer_id=str(shipment.buyer_id),
        tracking_number=shipment.tracking_number,
        tracking_url=shipment.tracking_url,
    )


# --- following -----------------------------------------------------------------------


def take_carrier_callback(
    session: Session,
    envelope: Envelope,
    callback: CarrierCallbackReceived,
    *,
    secrets: tuple[str, ...],
    tolerance: int,
    poll_age: dt.timedelta,
) -> bool:
    """Verify a queued carrier callback again and apply it; False if it changed nothing.

    The signature is checked as of when the gateway received it (the envelope's
    time: the topic may have waited), and remembered in this transaction, so a
    replay of the same signed message changes nothing.
    """
    try:
        verified = verify(
            callback.signature,
            callback.body.encode(),
            secrets,
            tolerance=tolerance,
            now=envelope.occurred_at.timestamp(),
        )
    except SignatureError as exc:
        raise InvalidCallbackError(f"carrier callback refused: {exc}") from exc
    if not remember_signature(
        session, verified.replay_key, expires_at=verified.expires_at
    ):
        return False
    try:
        body = CarrierCallback.from_json(json.loads(callback.body))
    except (KeyError, ValueError, TypeError) as exc:
        raise InvalidCallbackError(f"not a carrier callback: {exc!r}") from exc
    news = CarrierNews(body.shipment_id, body.status, body.occurred_at, "callback")
    return apply_carrier_news(session, news, poll_age=poll_age)


def poll_shipment(
    session: Session,
    *,
    shipment_id: uuid.UUID,
    carrier: CarrierClient,
    poll_age: dt.timedelta,
) -> dt.datetime | None:
    """Ask the carrier where a shipment is and apply it; return when to ask again."""
    shipment = session.get(Shipment, shipment_id)
    if shipment is None or shipment.status == ShipmentStatus.DELIVERED:
        return None
    with _counting_errors("get"):
        remote = carrier.get_shipment(shipment.carrier_shipment_id)
    news = CarrierNews(remote.id, remote.status, remote.updated_at, "poll")
    apply_carrier_news(session, news, poll_age=poll_age)
    return _next_check(shipment, poll_age)


def apply_carrier_news(
    session: Session, news: CarrierNews, *, poll_age: dt.timedelta
) -> bool:
    """Move a shipment forward to what the carrier says; False if it changed nothing.

    Locks the shipment's row (callbacks and the poller may race). News repeated or
    behind the shipment is ignored and counted.
    """
    shipment = session.scalars(
        sa.select(Shipment)
        .where(Shipment.carrier_shipment_id == news.carrier_shipment_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if shipment is None:
        raise UnknownShipmentError(f"no shipment {news.carrier_shipment_id}")
    return _advance(session, shipment, news, poll_age=poll_age)


def _advance(
    session: Session, shipment: Shipment, news: CarrierNews, *, poll_age: dt.timedelta
) -> bool:
    try:
        target = ShipmentStatus(news.status)
    except ValueError as exc:
        raise InvalidCallbackError(f"unknown carrier status {news.status!r}") from exc
    ignored = states.why_ignored(shipment.status, target)
    if ignored is not None:
        SHIPMENT_NEWS_IGNORED.labels(news.source, ignored.value).inc()
        return False
    for status in states.steps(shipment.status, target):
        session.add(ShipmentEvent(shipment_id=shipment.id, status=status, at=news.at))
        emit(session, _moved_event(shipment, status))
        SHIPMENTS.labels(status.value).inc()
    shipment.status = target
    shipment.next_check_at = _next_check(shipment, poll_age)
    session.flush()
    return True


def _next_check(shipment: Shipment, poll_age: dt.timedelta) -> dt.datetime | None:
    """When the poller asks about the shipment next (never once delivered)."""
    if shipment.status == ShipmentStatus.DELIVERED:
        return None
    return utcnow() + poll_age


def _moved_event(shipment: Shipment, status: ShipmentStatus) -> Event:
    kind = {
        ShipmentStatus.IN_TRANSIT: ShipmentInTransit,
        ShipmentStatus.DELIVERED: ShipmentDelivered,
    }[status]
    return kind(shipment_id=str(shipment.id), order_id=str(shipment.order_id))


# --- reading -------------------------------------------------------------------------


def _visible(user: Principal) -> list[sa.ColumnElement[bool]]:
    return [] if user.is_admin else [Shipment.buyer_id == user_uuid(user)]


def view_of(shipment: Shipment) -> ShipmentView:
    """The shipment as shown, with its history oldest first."""
    return ShipmentView(
        id=shipment.id,
        order_id=shipment.order_id,
        status=shipment.status,
        tracking_number=shipment.tracking_number,
        tracking_url=shipment.tracking_url,
        events=tuple(StatusChange(e.status, e.at) for e in shipment.events),
        created_at=shipment.created_at,
        updated_at=shipment.updated_at,
    )


def show_shipment(
    session: Session, *, user: Principal, shipment_id: uuid.UUID
) -> ShipmentView:
    """The caller's shipment (any, for an admin); another buyer's is not found."""
    shipment = session.scalars(
        sa.select(Shipment)
        .where(Shipment.id == shipment_id, *_visible(user))
        .options(selectinload(Shipment.events))
    ).one_or_none()
    if shipment is None:
        raise ShipmentNotFoundError(f"No shipment {shipment_id}")
    return view_of(shipment)


def list_shipments(
    session: Session,
    *,
    user: Principal,
    order_id: uuid.UUID | None = None,
    page: int = 1,
    page_size: int = 20,
) -> Page[ShipmentView]:
    """One page of the caller's shipments (every one, for an admin), newest first."""
    criteria = _visible(user)
    if order_id is not None:
        criteria.append(Shipment.order_id == order_id)
    found = paginate(
        session,
        sa.select(Shipment)
        .where(*criteria)
        .order_by(Shipment.created_at.desc(), Shipment.id.desc())
        .options(selectinload(Shipment.events)),
        page=page,
        page_size=page_size,
    )
    return Page([view_of(s) for s in found.items], page, page_size, found.total)
