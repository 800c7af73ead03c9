"""The carrier worker: the status timer and the signed callbacks (no Kafka)."""

from __future__ import annotations

from chomik.worker import Worker
from mocks.carrier.jobs import jobs
from mocks.carrier.settings import CarrierSettings


def build_worker(settings: CarrierSettings | None = None) -> Worker:
    """Build the carrier worker process (`chomik worker carrier`)."""
    settings = settings or CarrierSettings.from_env()
    return Worker("carrier", settings, jobs=jobs(settings), relay=False)
