"""The carrier mock's HTTP edges: one blueprint per module."""

from __future__ import annotations

import datetime as dt
from typing import Any

from chomik.web import settings_of
from mocks.carrier.models import Shipment
from mocks.carrier.settings import CarrierSettings


def step() -> dt.timedelta | None:
    """The timer's step (None when only `advance` moves shipments)."""
    seconds = settings_of(CarrierSettings).carrier_step_seconds
    return dt.timedelta(seconds=seconds) if seconds > 0 else None


def shown(shipment: Shipment) -> dict[str, Any]:
    """A shipment with its `tracking_url`."""
    base = settings_of(CarrierSettings).carrier_public_url.rstrip("/")
    return {
        "id": shipment.id,
        "reference": shipment.reference,
        "status": shipment.status,
        "tracking_number": shipment.tracking_number,
        "tracking_url": f"{base}/api/v1/tracking/{shipment.tracking_number}",
        "address": shipment.address,
        "created_at": shipment.created_at,
        "updated_at": shipment.updated_at,
    }
