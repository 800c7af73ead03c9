"""The orders worker: the outbox relay, the consumers that move orders, the leased jobs."""

from __future__ import annotations

from apps.orders.consumers import CONSUMERS
from apps.orders.jobs import expire_due_orders, release_abandoned_placements
from apps.orders.settings import OrdersSettings
from chomik.jobs.scheduling import Job
from chomik.worker import Worker

JOBS: list[Job] = [
    Job("expire_due_orders", expire_due_orders, seconds=5, jitter=1),
    Job("release_abandoned_placements", release_abandoned_placements, seconds=30),
]


def build_worker(settings: OrdersSettings | None = None) -> Worker:
    """Build the orders worker process (`chomik worker orders`)."""
    return Worker(
        "orders", settings or OrdersSettings.from_env(), consumers=CONSUMERS, jobs=JOBS
    )
