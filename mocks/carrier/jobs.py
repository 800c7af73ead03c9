"""The carrier's scheduled jobs: the status timer and sending the signed callbacks."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from chomik.jobs import Job, claimed
from chomik.webhooks import callback_jobs
from mocks.carrier import services
from mocks.carrier.models import Shipment
from mocks.carrier.settings import CarrierSettings

IDLE_MAX = 60.0  # seconds; a missed wake-up delays a step no longer than this


def advance_due_shipments(step: dt.timedelta) -> Job:
    """The timer: every shipment whose step is due moves one status on."""

    def advance(session: Session, row: Any) -> dt.datetime | None:
        return services.step_due_shipment(session, shipment_id=row.id, step=step)

    return claimed(
        "advance_due_shipments",
        Shipment,
        advance,
        seconds=min(1.0, step.total_seconds()),
        # Idle, it sleeps until the next step is due; a new timer wakes it.
        idle_max=IDLE_MAX,
        wake_channel=services.TIMER_CHANNEL,
        lease=dt.timedelta(seconds=30),
        due_column="next_step_at",
    )


def jobs(settings: CarrierSettings) -> list[Job]:
    """The carrier worker's jobs, configured by its settings."""
    found = callback_jobs(settings.signing_secret, settings.faults)
    if settings.carrier_step_seconds > 0:
        step = dt.timedelta(seconds=settings.carrier_step_seconds)
        found.append(advance_due_shipments(step))
    return found
