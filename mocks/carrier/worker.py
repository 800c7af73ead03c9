"""The carrier worker: the status timer and the signed callbacks (no Kafka)."""

from __future__ import annotations

from chomik.worker import Worker
from mocks.carrier.jobs import JOBS
from mocks.carrier.settings import CarrierSettings


def build_worker(settings: CarrierSettings | None = None) -> Worker:
    """Build the carrier worker process (`chomik worker carrier`)."""
    return Worker(
        "carrier", settings or CarrierSettings.from_env(), jobs=JOBS, relay=False
    )
