"""Scheduled jobs of the delivery worker: the shipment poller, a safety net.

A callback may never come (dropped, or refused for good). Every replica runs the
poller through the kit's claimed-job runner: it leases shipments not moved for
`SHIPMENT_POLL_AGE` seconds, asks the carrier about each and applies the answer
through the same service function as callbacks. A carrier that is down fails the
row, which comes due again after the runner's `retry_after`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from apps.delivery import services
from apps.delivery.models import Shipment
from apps.delivery.settings import DeliverySettings
from chomik.jobs import Job, claimed
from clients.carrier import CarrierClient

# Long enough for a batch of carrier calls, each bounded by the client's timeout.
LEASE = dt.timedelta(minutes=2)


def delivery_jobs(settings: DeliverySettings, carrier: CarrierClient) -> list[Job]:
    """The `JOBS` of the delivery worker, bound to its carrier."""
    poll_age = dt.timedelta(seconds=settings.shipment_poll_age)

    def poll_shipment(session: Session, row: Any) -> dt.datetime | None:
        """Ask the carrier about one claimed shipment; return when it is due again."""
        return services.poll_shipment(
            session, shipment_id=row.id, carrier=carrier, poll_age=poll_age
        )

    return [
        claimed(
            "poll_shipments", Shipment, poll_shipment,
            seconds=settings.shipment_poll_interval, lease=LEASE, batch=50,
            jitter=settings.shipment_poll_interval / 5,
            # Idle, it sleeps until the next shipment comes due; one made
            # meanwhile is asked about at most one poll age late.
            idle_max=max(settings.shipment_poll_interval, settings.shipment_poll_age),
        ),
    ]  # fmt: skip
