"""The orders worker: the outbox relay, the consumers that move orders, the leased jobs."""

from __future__ import annotations

from apps.orders.consumers import CONSUMERS
from apps.orders.jobs import JOBS
from apps.orders.settings import OrdersSettings
from chomik.worker import Worker


def build_worker(settings: OrdersSettings | None = None) -> Worker:
    """Build the orders worker process (`chomik worker orders`)."""
    return Worker(
        "orders", settings or OrdersSettings.from_env(), consumers=CONSUMERS, jobs=JOBS
    )
