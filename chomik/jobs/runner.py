"""Two kinds of leased job, each one function plus one line in an app's `JOBS`.

* `claimed(...)`: work on due rows, one row per transaction. A run claims a batch
  (`claim_due`), then runs the handler on each row in its own transaction together
  with `complete_claim`, so a row whose lease ran out and that another replica took
  over has its effect rolled back (`StaleClaimError`: counted, not an error). A
  handler that raises is rolled back, and its row released: due again after
  `retry_after` (logged, counted). The run stops between rows when the worker stops,
  giving back the rows it claimed but did not reach (and waking the
  job's other replicas, with a `wake_channel`), and otherwise claims batches
  until none is due. The handler must not delete its row. Only what it writes
  through its session is undone with a stale claim: an effect committed elsewhere
  (a txcoord transaction, a remote call) must be idempotent.
* `exclusive(...)`: work on a whole table at once (the prunes). The run takes
  `pg_try_advisory_xact_lock` on the job's name in its transaction; a replica that
  finds it taken skips the run, so two replicas never run the same job at once.

Every singleton job of the kit and the apps uses `exclusive`; every per-row job uses
`claimed`. Both count their outcomes in `scheduler_job_rows_total{job, outcome}`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from chomik.db import lock_key, try_advisory_xact_lock, utcnow
from chomik.jobs.scheduling import (
    Counts,
    Job,
    JobContext,
    StaleClaimError,
    claim_due,
    complete_claim,
    notify_job,
    release_claim,
    table_of,
)
from chomik.metrics import JOB_ROWS

log = logging.getLogger(__name__)


# Advisory-lock namespace of exclusive jobs (the outbox relay's shards use 0x0C40).
_EXCLUSIVE_LOCK_NAMESPACE = 0x0C41

RowHandler = Callable[[Session, sa.Row[Any]], dt.datetime | None]
"""`handle(session, row) -> next due time`: the effect for one claimed row.

It runs in the row's transaction; None means the row is never due again. It may
update other columns of its row, and must not delete it.
"""

TableJob = Callable[[Session, JobContext], Any]
"""`func(session, context)`: an exclusive job's work, in its locked transaction."""


@dataclass(frozen=True)
class ClaimedRun:
    """The body of a claimed job: claim, handle, complete or release, repeat."""

    name: str
    table: sa.Table | type[Any]
    handle: RowHandler
    lease: dt.timedelta
    batch: int
    retry_after: dt.timedelta
    due_column: str = "next_check_at"
    token_column: str = "claim_token"
    where: Sequence[sa.ColumnElement[bool]] = ()
    due_while: Sequence[sa.ColumnElement[bool]] = ()
    wake_channel: str | None = None

    def __call__(self, context: JobContext) -> Counts:
        """Handle every due row once; return the count of each outcome (with, when
        there was none, the time the earliest row comes due)."""
        counts = Counts(done=0, stale=0, failed=0, given_back=0)
        # Only rows due when the run started: one the handler makes due again at
        # once waits for the next run instead of keeping this one going forever.
        due_by_start = table_of(self.table).c[self.due_column] <= utcnow()
        while not context.stopping.is_set():
            rows = claim_due(
                context.sessions, self.table, limit=self.batch, lease=self.lease,
                due_column=self.due_column, token_column=self.token_column,
                where=[*self.where, due_by_start],
            )  # fmt: skip
            for index, row in enumerate(rows):
                if context.stopping.is_set():
                    given_back = self._give_back(context, rows[index:])
                    counts["given_back"] += given_back
                    JOB_ROWS.labels(self.name, "given_back").inc(given_back)
                    return counts
                outcome = self._run_row(context, row)
                counts[outcome] += 1
                JOB_ROWS.labels(self.name, outcome).inc()
            if len(rows) < self.batch:
                break
        if not any(counts.values()):
            counts.next_due = self._next_due(context)
        return counts

    def _next_due(self, context: JobContext) -> dt.datetime | None:
        due = table_of(self.table).c[self.due_column]
        with context.sessions() as session:
            found: dt.datetime | None = session.scalar(
                sa.select(sa.func.min(due)).where(*self.where)
            )
        return found

    def _key(self, row: sa.Row[Any]) -> tuple[Any, Any]:
        (pk,) = table_of(self.table).primary_key.columns
        return row._mapping[pk.name], row._mapping[self.token_column]

    def _run_row(self, context: JobContext, row: sa.Row[Any]) -> str:
        key, token = self._key(row)
        try:
            with context.sessions.begin() as session:
                next_due = self.handle(session, row)
                complete_claim(
                    session, self.table, key, token, next_due=next_due,
                    due_column=self.due_column, token_column=self.token_column,
                    still=self.due_while,
                )  # fmt: skip
        except StaleClaimError:
            log.warning("job %s: row %s was taken over; its effect is undone",
                        self.name, key)  # fmt: skip
            return "stale"
        # The loop boundary: one failing row must not stop the others.
        except Exception:  # noqa: BLE001 - logged, counted, and the row retried
            log.exception("job %s: row %s failed; retrying in %s",
                          self.name, key, self.retry_after)  # fmt: skip
            with context.sessions.begin() as session:
                release_claim(
                    session, self.table, key, token, after=self.retry_after,
                    due_column=self.due_column, token_column=self.token_column,
                )  # fmt: skip
            return "failed"
        return "done"

    def _give_back(self, context: JobContext, rows: Sequence[sa.Row[Any]]) -> int:
        """Make rows claimed but not reached due now, for another replica (woken,
        when the job has a wake channel: it may have backed off far)."""
        with context.sessions.begin() as session:
            for row in rows:
                key, token = self._key(row)
                release_claim(
                    session, self.table, key, token,
                    due_column=self.due_column, token_column=self.token_column,
                )  # fmt: skip
            if self.wake_channel and rows:
                notify_job(session, self.wake_channel)
        return len(rows)


def claimed(
    name: str,
    table: sa.Table | type[Any],
    handle: RowHandler,
    *,
    seconds: float,
    lease: dt.timedelta,
    batch: int = 50,
    retry_after: dt.timedelta = dt.timedelta(seconds=30),
    jitter: float | None = None,
    due_column: str = "next_check_at",
    token_column: str = "claim_token",
    where: Sequence[sa.ColumnElement[bool]] = (),
    idle_max: float | None = None,
    wake_channel: str | None = None,
    due_while: Sequence[sa.ColumnElement[bool]] | None = None,
) -> Job:
    """A job running `handle` on each due row of `table`, one transaction per row.

    The handler's next due time is kept only while the row meets `due_while`
    (default: `where`), checked as its claim completes: a row another writer moved
    out of the job's hands meanwhile (a payment a callback settled) is never due
    again.

    `lease` must outlast handling a whole batch: a row still being handled when it
    runs out may be handled by another replica too, and one of the two is undone.
    With `idle_max`, runs that find no due row back off up to that many seconds
    (`Job`): a row that comes due meanwhile waits at most that long, unless its
    writer wakes the job (`wake_channel`, `notify_job`).
    """
    run = ClaimedRun(
        name, table, handle, lease, batch, retry_after, due_column, token_column,
        tuple(where), tuple(where if due_while is None else due_while), wake_channel,
    )  # fmt: skip
    return Job(name, run, seconds, jitter, idle_max, wake_channel)


@dataclass(frozen=True)
class ExclusiveRun:
    """The body of an exclusive job: lock its name, check its tables, run."""

    name: str
    func: TableJob
    tables: tuple[str, ...] = ()

    def __call__(self, context: JobContext) -> Any:
        """Run `func` under the job's advisory lock; None if another replica has it."""
        with context.sessions.begin() as session:
            if not try_lock(session, self.name):
                JOB_ROWS.labels(self.name, "skipped").inc()
                return None
            if not all(has_table(session, table) for table in self.tables):
                return None
            result = self.func(session, context)
        JOB_ROWS.labels(self.name, "done").inc()
        return result


def exclusive(
    name: str,
    func: TableJob,
    *,
    seconds: float,
    jitter: float | None = None,
    tables: Sequence[str] = (),
) -> Job:
    """A job that at most one replica runs at a time, in one transaction.

    With `tables`, a database that lacks one of them skips the job (kit jobs run in
    every worker, and not every database holds every kit table).
    """
    return Job(name, ExclusiveRun(name, func, tuple(tables)), seconds, jitter)


def try_lock(session: Session, name: str) -> bool:
    """Take the transaction-level advisory lock of a job name, if it is free."""
    return try_advisory_xact_lock(
        session, _EXCLUSIVE_LOCK_NAMESPACE, lock_key(name.encode())
    )


def has_table(session: Session, name: str) -> bool:
    """Whether the session's database has this table (in its search path)."""
    return session.scalar(sa.select(sa.func.to_regclass(name))) is not None
