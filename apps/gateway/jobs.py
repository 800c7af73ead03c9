"""Scheduled jobs of the gateway worker: `JOBS` is the table the worker runs."""

from __future__ import annotations

import datetime as dt
from typing import cast

from sqlalchemy.orm import Session

from apps.gateway import services
from apps.gateway.settings import GatewaySettings
from chomik.jobs import Job, JobContext, exclusive


def prune_refresh_tokens(session: Session, context: JobContext) -> int:
    """Delete refresh tokens and sessions past their retention."""
    settings = cast(GatewaySettings, context.settings)
    # A revoked session is read by the deny check while its access tokens live.
    keep = max(settings.refresh_token_retention, settings.access_token_ttl)
    return services.prune_refresh_tokens(session, older_than=dt.timedelta(seconds=keep))


JOBS: list[Job] = [
    exclusive("prune_refresh_tokens", prune_refresh_tokens, seconds=3600, jitter=60),
]
