"""Scheduled jobs of the storage worker: `JOBS` is the table the worker runs."""

from __future__ import annotations

import datetime as dt
from typing import cast

from sqlalchemy.orm import Session

from apps.storage import services
from apps.storage.settings import StorageSettings
from chomik.jobs import Job, JobContext, exclusive


def prune_reservations(session: Session, context: JobContext) -> int:
    """Delete finished reservations past their retention."""
    settings = cast(StorageSettings, context.settings)
    return services.prune_reservations(
        session, older_than=dt.timedelta(seconds=settings.reservation_retention)
    )


JOBS: list[Job] = [
    exclusive("prune_reservations", prune_reservations, seconds=3600, jitter=60),
]
