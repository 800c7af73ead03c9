"""The shipment state machine: forward only; pure, no I/O.

    CREATED ──▶ IN_TRANSIT ──▶ DELIVERED
       └──────────────────────────▲

The carrier's news may come twice (a duplicate callback, a poll after a callback)
or out of order (a late "in transit" after "delivered"): such news is not an
error, it is ignored. A jump (CREATED straight to DELIVERED: "in transit" was
lost) passes through every status in between.
"""

from __future__ import annotations

from enum import StrEnum

from apps.delivery.models import ShipmentStatus

ORDER: tuple[ShipmentStatus, ...] = (
    ShipmentStatus.CREATED,
    ShipmentStatus.IN_TRANSIT,
    ShipmentStatus.DELIVERED,
)


class Ignored(StrEnum):
    """Why news about a shipment changes nothing (the metric's label)."""

    REPEATED = "repeated"
    BACKWARDS = "backwards"


def steps(
    current: ShipmentStatus, target: ShipmentStatus
) -> tuple[ShipmentStatus, ...]:
    """The statuses a shipment passes through from `current` to `target`, in order.

    Empty when `target` is `current` or behind it.
    """
    return ORDER[ORDER.index(current) + 1 : ORDER.index(target) + 1]


def why_ignored(current: ShipmentStatus, target: ShipmentStatus) -> Ignored | None:
    """Why moving `current` to `target` changes nothing; None if it moves forward."""
    if current == target:
        return Ignored.REPEATED
    if ORDER.index(target) < ORDER.index(current):
        return Ignored.BACKWARDS
    return None
