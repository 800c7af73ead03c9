"""Scheduled jobs of the payment worker: `JOBS` is the table the worker runs."""

from __future__ import annotations

import datetime as dt
from typing import cast

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

import txcoord
from apps.payment.settings import PaymentSettings
from chomik.jobs import Job, JobContext, exclusive

# The coordinator's participants by name, and its gid prefix: pruning must scan
# every database a branch of a payment transaction may be prepared in.
TXCOORD_PREFIX = txcoord.DEFAULT_PREFIX


def prune_decisions(session: Session, context: JobContext) -> int:
    """Delete 2PC decisions past their retention whose branches are all finished."""
    settings = cast(PaymentSettings, context.settings)
    participants = {
        "payment": sa.create_engine(settings.database_url, poolclass=NullPool),
        "orders": sa.create_engine(settings.orders_database_url, poolclass=NullPool),
    }
    log = sa.create_engine(settings.txcoord_database_url, poolclass=NullPool)
    try:
        return txcoord.prune_decisions(
            participants,
            log,
            prefix=TXCOORD_PREFIX,
            older_than=dt.timedelta(seconds=settings.txcoord_decision_retention),
        )
    finally:
        for engine in [*participants.values(), log]:
            engine.dispose()


JOBS: list[Job] = [
    exclusive("prune_txcoord_decisions", prune_decisions, seconds=3600, jitter=60),
]
