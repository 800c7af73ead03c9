"""The storage worker: the outbox relay, the order-event consumers and its jobs."""

from __future__ import annotations

from apps.storage.consumers import CONSUMERS
from apps.storage.jobs import JOBS
from apps.storage.settings import StorageSettings
from chomik.worker import Worker
from clients.events import STOCK_EVENTS


def build_worker(settings: StorageSettings | None = None) -> Worker:
    """Build the storage worker process (`chomik worker storage`)."""
    return Worker(
        "storage",
        settings or StorageSettings.from_env(),
        consumers=CONSUMERS,
        produces=[STOCK_EVENTS],
        jobs=JOBS,
    )
