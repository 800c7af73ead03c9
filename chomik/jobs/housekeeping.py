"""The kit's own jobs, which every worker runs beside its app's `JOBS`.

`KIT_JOBS` is the one list: the Worker adds it to every app's jobs. Each entry is
an `exclusive` job (one replica at a time) with its retention in the settings; a
job whose tables a database lacks is skipped there. Kit tables that other kit
modules own (idempotency keys, seen signatures) are pruned here too.
"""

from __future__ import annotations

import datetime as dt
import logging

import sqlalchemy as sa
from sqlalchemy.orm import Session

from chomik.idempotency import IDEMPOTENCY_TABLE, prune_idempotency_keys
from chomik.jobs.runner import exclusive
from chomik.jobs.scheduling import JOBSTORE_PREFIX, Job, JobContext, jobstore_table
from chomik.messaging.outbox import INBOX_TABLE, OUTBOX_TABLE, prune_messages
from chomik.signing import SEEN_SIGNATURES_TABLE, prune_seen_signatures

log = logging.getLogger(__name__)

HOUR = 3600.0


def drop_stale_jobstores(
    session: Session, *, own_table: str, older_than: dt.timedelta
) -> list[str]:
    """Drop the job-store tables of replicas not seen for `older_than`; return them.

    A live replica's APScheduler keeps every job's `next_run_time` in the near
    future, so a table whose jobs are all due longer ago than `older_than` belongs
    to a replica that is gone (pod names change on every restart). The replica's own
    table and tables with no job are kept: an empty table may be one a replica is
    starting with right now.
    """
    pattern = JOBSTORE_PREFIX.replace("_", r"\_") + "%"
    names = session.scalars(
        sa.text(
            "SELECT tablename FROM pg_tables"
            " WHERE schemaname = current_schema() AND tablename LIKE :pattern"
        ),
        {"pattern": pattern},
    ).all()
    quote = session.get_bind().dialect.identifier_preparer.quote
    dropped = []
    for name in names:
        if name == own_table:
            continue
        stale = session.scalar(
            sa.text(
                "SELECT max(next_run_time) < extract(epoch FROM now()) - :keep"
                f" FROM {quote(name)}"
            ),
            {"keep": older_than.total_seconds()},
        )
        if stale:
            session.execute(sa.text(f"DROP TABLE {quote(name)}"))
            dropped.append(name)
    if dropped:
        log.info("dropped the job stores of replicas not seen: %s", dropped)
    return dropped


def _drop_stale_jobstores(session: Session, context: JobContext) -> list[str]:
    return drop_stale_jobstores(
        session,
        own_table=jobstore_table(context.replica_id),
        older_than=dt.timedelta(seconds=context.settings.jobstore_retention),
    )


def _prune_messages(session: Session, context: JobContext) -> tuple[int, int]:
    settings = context.settings
    return prune_messages(
        session,
        outbox_retention=dt.timedelta(seconds=settings.outbox_retention),
        inbox_retention=dt.timedelta(seconds=settings.inbox_retention),
    )


def _prune_idempotency_keys(session: Session, context: JobContext) -> int:
    return prune_idempotency_keys(session)


def _prune_seen_signatures(session: Session, context: JobContext) -> int:
    # A consumer verifies a callback against the time the gateway received it, so a
    # remembered signature must outlive its expiry by as long as a consumer may lag.
    grace = dt.timedelta(seconds=context.settings.seen_signature_retention)
    return prune_seen_signatures(session, grace=grace)


KIT_JOBS: tuple[Job, ...] = (
    exclusive("drop_stale_jobstores", _drop_stale_jobstores, seconds=HOUR, jitter=60),
    exclusive(
        "prune_messages",
        _prune_messages,
        seconds=300,
        jitter=30,
        tables=(OUTBOX_TABLE, INBOX_TABLE),
    ),  # fmt: skip
    exclusive(
        "prune_idempotency_keys",
        _prune_idempotency_keys,
        seconds=300,
        jitter=30,
        tables=(IDEMPOTENCY_TABLE,),
    ),
    exclusive(
        "prune_seen_signatures",
        _prune_seen_signatures,
        seconds=300,
        jitter=30,
        tables=(SEEN_SIGNATURES_TABLE,),
    ),
)
