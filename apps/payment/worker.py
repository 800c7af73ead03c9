"""The payment worker: the outbox relay; consumers and jobs join as the service grows."""

from __future__ import annotations

from apps.payment.jobs import JOBS
from apps.payment.settings import PaymentSettings
from chomik.messaging.consuming import Handler, HandlerKey
from chomik.worker import Worker

CONSUMERS: dict[HandlerKey, Handler] = {}


def build_worker(settings: PaymentSettings | None = None) -> Worker:
    """Build the payment worker process (`chomik worker payment`)."""
    return Worker(
        "payment",
        settings or PaymentSettings.from_env(),
        consumers=CONSUMERS,
        jobs=JOBS,
    )
