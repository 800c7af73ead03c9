"""The delivery worker: the outbox relay; consumers and jobs join as the service grows."""

from __future__ import annotations

from apps.delivery.settings import DeliverySettings
from chomik.jobs.scheduling import Job
from chomik.messaging.consuming import Handler, HandlerKey
from chomik.worker import Worker

CONSUMERS: dict[HandlerKey, Handler] = {}
JOBS: list[Job] = []


def build_worker(settings: DeliverySettings | None = None) -> Worker:
    """Build the delivery worker process (`chomik worker delivery`)."""
    return Worker(
        "delivery",
        settings or DeliverySettings.from_env(),
        consumers=CONSUMERS,
        jobs=JOBS,
    )
