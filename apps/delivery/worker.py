"""The delivery worker: the outbox relay, paid orders and carrier callbacks, the poller."""

from __future__ import annotations

from apps.delivery.consumers import consumers
from apps.delivery.jobs import delivery_jobs
from apps.delivery.settings import DeliverySettings
from chomik.worker import Worker
from clients.carrier import CarrierClient
from clients.events import CARRIER_CALLBACKS, DELIVERY_EVENTS


def carrier_of(settings: DeliverySettings) -> CarrierClient:
    """The carrier client the worker's consumers and poller share."""
    return CarrierClient(
        settings.carrier_url,
        merchant_token=settings.carrier_merchant_token,
        timeout=settings.http_timeout,
    )


def build_worker(
    settings: DeliverySettings | None = None, *, carrier: CarrierClient | None = None
) -> Worker:
    """Build the delivery worker process (`chomik worker delivery`)."""
    settings = settings or DeliverySettings.from_env()
    carrier = carrier or carrier_of(settings)
    return Worker(
        "delivery",
        settings,
        consumers=consumers(settings, carrier),
        jobs=delivery_jobs(settings, carrier),
        topics=[CARRIER_CALLBACKS],
        produces=[DELIVERY_EVENTS],
    )
