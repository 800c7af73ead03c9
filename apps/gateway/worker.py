"""The gateway worker: scheduled jobs only (no outbox relay, no consumers)."""

from __future__ import annotations

from apps.gateway.jobs import JOBS
from apps.gateway.settings import GatewaySettings
from chomik.worker import Worker


def build_worker(settings: GatewaySettings | None = None) -> Worker:
    """Build the gateway worker process (`chomik worker gateway`)."""
    return Worker(
        "gateway", settings or GatewaySettings.from_env(), jobs=JOBS, relay=False
    )
