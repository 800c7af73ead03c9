"""Jobs on every worker replica, coordinated through row leases.

Each replica runs an APScheduler 3 `BackgroundScheduler` whose `SQLAlchemyJobStore`
table is its own (`apscheduler_jobs_<replica id>`): APScheduler must never share one
job-store table between processes. Misfires are coalesced. Replicas coordinate in the
work itself: `claim_due` claims a batch of due rows in one statement
(`FOR UPDATE SKIP LOCKED`), pushes their due time a lease ahead, stamps a claim token
and commits at once, in a session of its own; the replica then works on the rows
without holding locks. A replica that dies mid-batch loses nothing: its rows come due
again when the lease ends. `complete_claim` finishes one row in the caller's
transaction only if the claim is still ours, else raises `StaleClaimError` after
rolling that transaction back. `chomik.jobs.runner` puts these together.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import queue
import re
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_RUNNING, SchedulerNotRunningError
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from chomik.db import Listener, in_two_phase
from chomik.metrics import JOB_DURATION, JOB_RUNS
from chomik.settings import Settings

log = logging.getLogger(__name__)

JOBSTORE_PREFIX = "apscheduler_jobs_"


@dataclass(frozen=True)
class JobContext:
    """What a job function receives; a long job checks `stopping` between items."""

    settings: Settings
    sessions: sessionmaker[Session]
    replica_id: str
    stopping: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class Job:
    """One periodic job of an app's `JOBS` list.

    With `idle_max`, a run that finds nothing to do (`func` returns a falsy value or
    a mapping of counts that are all 0) puts the next run off: twice the interval
    after the first such run, four times after the second, ... up to `idle_max`
    seconds; the first run that finds work goes back to every `seconds`.

    With `wake_channel`, a job put off runs at once when its database notifies
    that channel (`notify_job` in the transaction that gives it work), so it may
    back off far without its work waiting for it. A run that knows when its next
    work comes due (a timer, a retry) says so in its result (`Counts.next_due`),
    and the job is put off no later than that.
    """

    name: str
    func: Callable[[JobContext], Any]
    seconds: float
    jitter: float | None = None
    idle_max: float | None = None
    wake_channel: str | None = None

    def idle_delay(self, idle_runs: int) -> float:
        """How long after a run to start the next, `idle_runs` empty runs in a row."""
        if not self.idle_max or idle_runs <= 0:
            return self.seconds
        longer = min(self.idle_max, self.seconds * 2 ** min(idle_runs, 30))
        return float(max(self.seconds, longer))


class Counts(dict[str, int]):
    """A run's count of each outcome; `next_due`, when the run found nothing to do:
    the time its earliest row comes due (None: no row is waiting)."""

    next_due: dt.datetime | None = None


def found_nothing(result: Any) -> bool:
    """Whether a job's result says its run had nothing to do."""
    if isinstance(result, Mapping):
        return not any(result.values())
    return not result


def notify_job(session: Session, channel: str) -> None:
    """Wake the jobs listening on `channel` when the caller's transaction commits.

    Not in a two-phase branch, which PostgreSQL would refuse to PREPARE: its
    work waits for the job's next run.
    """
    if not in_two_phase(session):
        session.execute(sa.select(sa.func.pg_notify(channel, "")))


def jobstore_table(replica_id: str) -> str:
    """The job-store table of one replica: `apscheduler_jobs_<id>_<hash of id>`.

    The hash of the exact id keeps ids that clean up alike (`payment-worker-1`,
    `Payment_Worker_1`) in tables of their own: a shared job store runs jobs twice.
    """
    clean = re.sub(r"[^a-z0-9_]", "_", replica_id.lower()).strip("_") or "default"
    digest = hashlib.sha1(replica_id.encode()).hexdigest()[:8]
    return f"{(JOBSTORE_PREFIX + clean)[:54]}_{digest}"


def table_of(table: sa.Table | type[Any]) -> sa.Table:
    """The Table of a Table or of a mapped class."""
    if isinstance(table, sa.Table):
        return table
    local: sa.Table = sa.inspect(table).local_table
    return local


class StaleClaimError(RuntimeError):
    """The lease ran out and another replica re-claimed the row; our effect is undone."""

    def __init__(self, table: str, key: Any) -> None:
        super().__init__(f"the claim on {table} row {key} was taken over")
        self.table = table
        self.key = key


def claim_due(
    sessions: Callable[[], Session],
    table: sa.Table | type[Any],
    *,
    limit: int,
    lease: dt.timedelta,
    due_column: str = "next_check_at",
    token_column: str = "claim_token",
    where: Sequence[sa.ColumnElement[bool]] = (),
) -> list[sa.Row[Any]]:
    """Claim up to `limit` due rows in a session of its own; return them (all columns).

    One statement: `UPDATE ... WHERE pk IN (SELECT pk ... WHERE due <= now()
    ORDER BY due LIMIT n FOR UPDATE SKIP LOCKED)` setting `due = now() + lease` and a
    fresh claim token (every returned row carries it in `token_column`). It commits
    at once, so no row lock is held while the caller works on the rows. It takes a
    session factory, not a session, so it can never commit work a caller has pending.
    """
    if isinstance(sessions, Session):
        raise TypeError("claim_due takes a session factory, not a session")
    target = table_of(table)
    (pk,) = target.primary_key.columns
    due = target.c[due_column]
    due_rows = (
        sa.select(pk)
        .where(due <= sa.func.now(), *where)
        .order_by(due)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    token = uuid.uuid4()
    statement = (
        sa.update(target)
        .where(pk.in_(due_rows.scalar_subquery()))
        .values({due_column: sa.func.now() + lease, token_column: token})
        .returning(*target.c)
    )
    with sessions() as session, session.begin():
        return list(session.execute(statement).all())


def complete_claim(
    session: Session,
    table: sa.Table | type[Any],
    key: Any,
    token: uuid.UUID,
    *,
    next_due: dt.datetime | None,
    token_column: str = "claim_token",
    due_column: str = "next_check_at",
    values: Mapping[str, Any] | None = None,
    still: Sequence[sa.ColumnElement[bool]] = (),
) -> None:
    """Finish a claimed row in the caller's transaction, if the claim is still ours.

    Sets the next due time (None: never again; also None when the row no longer
    meets `still`, the job's criteria, which another writer changed meanwhile),
    clears the token and applies `values`;
    the row stays locked until the caller commits, so nobody re-claims it meanwhile.
    If the lease ran out and another replica re-claimed the row, the session is
    rolled back (the caller's effect with it) and `StaleClaimError` is raised. Call
    it after the effect: its row lock, taken first, would block an effect that
    updates the same row through another connection (a txcoord branch).
    """
    target = table_of(table)
    (pk,) = target.primary_key.columns
    due: Any = next_due
    if next_due is not None and still:
        value = sa.literal(next_due, target.c[due_column].type)
        due = sa.case((sa.and_(*still), value), else_=None)
    result: sa.CursorResult[Any] = session.execute(  # type: ignore[assignment]
        sa.update(target)
        .where(pk == key, target.c[token_column] == token)
        .values({due_column: due, token_column: None, **dict(values or {})})
    )
    if not result.rowcount:
        session.rollback()
        raise StaleClaimError(target.name, key)


def release_claim(
    session: Session,
    table: sa.Table | type[Any],
    key: Any,
    token: uuid.UUID,
    *,
    after: dt.timedelta = dt.timedelta(0),
    token_column: str = "claim_token",
    due_column: str = "next_check_at",
) -> bool:
    """Give a claimed row back, due `after` from now; False if it was taken over."""
    target = table_of(table)
    (pk,) = target.primary_key.columns
    when = sa.func.now() + after
    result: sa.CursorResult[Any] = session.execute(  # type: ignore[assignment]
        sa.update(target)
        .where(pk == key, target.c[token_column] == token)
        .values({due_column: when, token_column: None})
    )
    return bool(result.rowcount)


# Live schedulers of this process, by replica id: job-store rows keep only picklable
# references (`_run_job`, replica id, job name), never sessions.
_REGISTRY: dict[str, Scheduler] = {}
_REGISTRY_LOCK = threading.Lock()


def _run_job(replica_id: str, name: str) -> None:
    with _REGISTRY_LOCK:
        scheduler = _REGISTRY[replica_id]
    job = scheduler.jobs.get(name)
    if job is None:
        return
    scheduler.mark_running(name, True)
    try:
        with JOB_DURATION.labels(name).time():
            result = job.func(scheduler.context)
    except Exception:
        JOB_RUNS.labels(name, "error").inc()
        log.exception("job %s failed", name)
        raise
    finally:
        scheduler.mark_running(name, False)
    JOB_RUNS.labels(name, "ok").inc()
    if job.idle_max:
        next_due = result.next_due if isinstance(result, Counts) else None
        scheduler.back_off(job, idle=found_nothing(result), next_due=next_due)


class Scheduler:
    """An app's `JOBS` on this replica, with its own APScheduler job-store table."""

    def __init__(
        self,
        jobs: Sequence[Job],
        *,
        settings: Settings,
        engine: Engine,
        sessions: sessionmaker[Session],
        replica_id: str | None = None,
    ) -> None:
        self.replica_id = replica_id or settings.scheduler_replica_id
        self.table = jobstore_table(self.replica_id)
        self.jobs = {job.name: job for job in jobs}
        self.context = JobContext(settings, sessions, self.replica_id)
        self.engine = engine
        self._scheduler: BackgroundScheduler | None = None
        self._idle_runs: dict[str, int] = {}
        self._woken: set[str] = set()
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self._moves: queue.SimpleQueue[tuple[str, dt.datetime] | None] = (
            queue.SimpleQueue()
        )
        channels = {job.wake_channel for job in jobs if job.wake_channel}
        self._listener = Listener(engine, channels, self.wake) if channels else None

    def mark_running(self, name: str, running: bool) -> None:
        """Record that a job's run began or ended (the job's own thread)."""
        with self._lock:
            (self._running.add if running else self._running.discard)(name)

    def back_off(
        self, job: Job, *, idle: bool, next_due: dt.datetime | None = None
    ) -> None:
        """Put the job's next run off after an idle run; back to its interval after work.

        Never past `next_due`, when the run's next work comes due then (nor sooner
        than the interval).

        Called in the job's own thread, which never waits for APScheduler: its
        shutdown holds the job-store lock while it waits for running jobs, so the
        change is made by the rescheduling thread. A wake-up that came while the
        run was on keeps the interval: its work may have arrived after the run
        looked.
        """
        if self.context.stopping.is_set():
            return
        with self._lock:
            woken = job.name in self._woken
            self._woken.discard(job.name)
            runs = self._idle_runs[job.name] = (
                self._idle_runs.get(job.name, 0) + 1 if idle and not woken else 0
            )
            if runs:  # else the interval trigger has set the next run already
                now = dt.datetime.now(dt.UTC)
                later = now + dt.timedelta(seconds=job.idle_delay(runs))
                if next_due is not None and next_due < later:
                    later = max(next_due, now + dt.timedelta(seconds=job.seconds))
                self._moves.put((job.name, later))

    def wake(self, channel: str) -> None:
        """Run now the jobs woken by `channel` that are put off (the listener's call)."""
        with self._lock:
            for job in self.jobs.values():
                if job.wake_channel != channel:
                    continue
                if job.name in self._running:
                    self._woken.add(job.name)  # its back-off keeps the interval
                elif self._idle_runs.pop(job.name, 0):
                    self._moves.put((job.name, dt.datetime.now(dt.UTC)))

    def _reschedule(self, scheduler: BackgroundScheduler) -> None:
        """Apply the moves of next runs in the order they were decided."""
        while (move := self._moves.get()) is not None:
            name, when = move
            # Shut down meanwhile: the job is gone, or the scheduler refuses.
            with contextlib.suppress(JobLookupError, SchedulerNotRunningError):
                scheduler.modify_job(name, next_run_time=when)

    def start(self) -> None:
        """Start the scheduler thread; jobs of the list replace stored definitions."""
        with _REGISTRY_LOCK:
            _REGISTRY[self.replica_id] = self
        scheduler = BackgroundScheduler(
            jobstores={
                "default": SQLAlchemyJobStore(engine=self.engine, tablename=self.table)
            },
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": 30,
            },
            timezone=dt.UTC,
        )
        scheduler.start(paused=True)
        wanted = set(self.jobs)
        for stored in scheduler.get_jobs():
            if stored.id not in wanted:
                stored.remove()
        for job in self.jobs.values():
            scheduler.add_job(
                "chomik.jobs.scheduling:_run_job",
                "interval",
                seconds=job.seconds,
                jitter=job.jitter,
                args=[self.replica_id, job.name],
                id=job.name,
                name=job.name,
                replace_existing=True,
            )
        scheduler.resume()
        self._scheduler = scheduler
        threading.Thread(
            target=self._reschedule, args=(scheduler,), name="reschedule", daemon=True
        ).start()
        if self._listener is not None:
            self._listener.start()

    @property
    def running(self) -> bool:
        """Whether jobs are being scheduled (started, and not paused or shut down)."""
        return self._scheduler is not None and self._scheduler.state == STATE_RUNNING

    def shutdown(self, wait: bool = True) -> None:
        """Stop scheduling; with `wait`, let running jobs finish first."""
        self.context.stopping.set()
        self._moves.put(None)
        if self._listener is not None:
            self._listener.stop()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=wait)
            self._scheduler = None
        with _REGISTRY_LOCK:
            _REGISTRY.pop(self.replica_id, None)
