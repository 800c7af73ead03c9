"""The claimed-job runner and exclusive jobs, against real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
import sqlalchemy as sa

from chomik.db import make_session_factory, utcnow
from chomik.jobs.runner import claimed, exclusive, try_lock
from chomik.jobs.scheduling import JobContext
from chomik.settings import Settings
from tests.chomik.jobs_helpers import (
    LEASE,
    add_items,
    due_rows,
    record_run,
    runs,
    wake_ups,
)
from tests.chomik.messaging_helpers import DUE_ITEMS

pytestmark = pytest.mark.usefixtures("committed_db")


@pytest.fixture
def sessions(engine):
    return make_session_factory(engine)


@pytest.fixture
def context(sessions):
    return JobContext(Settings(), sessions, "test-replica")


def test_runner_runs_each_due_row_once(engine, context):
    add_items(engine, 12)
    not_due = 100
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO test_due_items (id, next_check_at)"
                " VALUES (:id, now() + interval '1 hour')"
            ),
            {"id": not_due},
        )
    job = claimed("sweep", DUE_ITEMS, record_run, seconds=1, lease=LEASE, batch=5)
    counts = job.func(context)
    assert counts["done"] == 12
    assert sorted(runs(engine)) == list(range(1, 13))
    idle = job.func(context)
    assert idle["done"] == 0, "nothing is due any more"
    rows = due_rows(engine)
    assert idle.next_due == min(row.next_check_at for row in rows.values())
    assert all(rows[i].claim_token is None for i in rows)
    assert all(
        rows[i].next_check_at > utcnow() + dt.timedelta(minutes=59) for i in rows
    )


def test_a_run_that_finds_no_row_waiting_says_no_work_is_coming(engine, context):
    job = claimed("sweep", DUE_ITEMS, record_run, seconds=1, lease=LEASE)
    counts = job.func(context)
    assert (dict(counts), counts.next_due) == (
        {"done": 0, "stale": 0, "failed": 0, "given_back": 0},
        None,
    )
    add_items(engine, 1)
    assert job.func(context).next_due is None, "a run that found work gives no time"


def test_a_run_handles_only_rows_due_when_it_started(engine, context):
    add_items(engine, 4)

    def again_at_once(session, row):
        record_run(session, row)
        return utcnow()

    job = claimed("sweep", DUE_ITEMS, again_at_once, seconds=1, lease=LEASE, batch=2)
    guard = threading.Timer(10, context.stopping.set)  # a run that never ends fails
    guard.start()
    try:
        assert job.func(context)["done"] == 4
    finally:
        guard.cancel()
    assert sorted(runs(engine)) == [1, 2, 3, 4]
    assert job.func(context)["done"] == 4, "the next run takes them again"


def test_runner_releases_a_failing_row_and_retries_it_later(engine, context):
    add_items(engine, 3)
    broken = {2}

    def handle(session, row):
        if row.id in broken:
            raise RuntimeError("the remote side is down")
        return record_run(session, row)

    job = claimed(
        "sweep", DUE_ITEMS, handle, seconds=1, lease=LEASE,
        retry_after=dt.timedelta(milliseconds=400),
    )  # fmt: skip
    counts = job.func(context)
    assert (counts["done"], counts["failed"]) == (2, 1)
    assert sorted(runs(engine)) == [1, 3]
    row = due_rows(engine)[2]
    assert row.claim_token is None, "released"
    assert row.next_check_at < utcnow() + dt.timedelta(seconds=1), "not the lease"
    assert job.func(context)["failed"] == 0, "not due before the backoff"
    broken.clear()
    time.sleep(0.5)
    assert job.func(context)["done"] == 1
    assert sorted(runs(engine)) == [1, 2, 3]


def test_runner_stops_between_rows_and_gives_the_rest_back(engine, context):
    add_items(engine, 6)

    def handle(session, row):
        context.stopping.set()  # the worker is told to stop while this row runs
        return record_run(session, row)

    job = claimed(
        "sweep", DUE_ITEMS, handle, seconds=1, lease=LEASE, batch=10,
        wake_channel="test_sweep",
    )  # fmt: skip
    with wake_ups(engine, "test_sweep") as woken_by:
        counts = job.func(context)
        woken = woken_by()
    assert woken == 1, "the other replicas' jobs are woken for the rows given back"
    assert (counts["done"], counts["given_back"]) == (1, 5)
    assert runs(engine) == [1]
    rows = due_rows(engine)
    given_back = [rows[i] for i in range(2, 7)]
    assert all(r.claim_token is None for r in given_back)
    assert all(r.next_check_at <= utcnow() for r in given_back), "due at once"


def test_an_exclusive_job_runs_on_one_replica_at_a_time(engine, sessions, context):
    ran = []
    job = exclusive("prune_things", lambda s, c: ran.append(c.replica_id) or 3,
                    seconds=60)  # fmt: skip
    with sessions.begin() as other_replica:
        assert try_lock(other_replica, "prune_things")
        assert job.func(context) is None
        assert ran == []
    assert job.func(context) == 3
    assert ran == ["test-replica"]
    missing = exclusive("prune_more", lambda s, c: ran.append("more"), seconds=60,
                        tables=("test_due_items", "no_such_table"))  # fmt: skip
    assert missing.func(context) is None
    assert ran == ["test-replica"]
    present = exclusive("prune_more", lambda s, c: ran.append("more"), seconds=60,
                        tables=("test_due_items",))  # fmt: skip
    present.func(context)
    assert ran == ["test-replica", "more"]
