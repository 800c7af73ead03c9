"""The orders worker: the outbox relay; consumers and jobs join as the service grows."""

from __future__ import annotations

from apps.orders.settings import OrdersSettings
from chomik.jobs.scheduling import Job
from chomik.messaging.consuming import Handler, HandlerKey
from chomik.worker import Worker

CONSUMERS: dict[HandlerKey, Handler] = {}
JOBS: list[Job] = []


def build_worker(settings: OrdersSettings | None = None) -> Worker:
    """Build the orders worker process (`chomik worker orders`)."""
    return Worker(
        "orders", settings or OrdersSettings.from_env(), consumers=CONSUMERS, jobs=JOBS
    )
