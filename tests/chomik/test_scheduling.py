"""Replica-safe jobs: `claim_due` leases, per-replica job stores, replicas that die."""

from __future__ import annotations

import datetime as dt
import signal
import statistics
import threading
import time
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from chomik import migrating
from chomik.db import make_session_factory, utcnow
from chomik.jobs.scheduling import (
    Counts,
    Job,
    Scheduler,
    StaleClaimError,
    claim_due,
    complete_claim,
    found_nothing,
    jobstore_table,
    notify_job,
)
from chomik.settings import Settings
from tests.chomik.jobs_helpers import (
    LEASE,
    add_items,
    due_rows,
    record_run,
    runs,
)
from tests.chomik.messaging_helpers import (
    DUE_ITEMS,
    spawn,
    wait_or_kill,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("committed_db")


@pytest.fixture
def sessions(engine):
    return make_session_factory(engine)


ROUNDS_DONE = sa.text("SELECT min(round) FROM test_due_items")


def test_claim_due_takes_only_due_rows_sets_lease_and_token(engine, sessions):
    add_items(engine, 5)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO test_due_items (id, next_check_at) VALUES (99, now() + interval '1 hour')"
            )
        )
    first = claim_due(sessions, DUE_ITEMS, limit=3, lease=LEASE)
    second = claim_due(sessions, DUE_ITEMS, limit=3, lease=LEASE)
    third = claim_due(sessions, DUE_ITEMS, limit=3, lease=LEASE)
    assert len(first) == 3
    assert len(second) == 2
    assert third == []
    assert {r.id for r in first} | {r.id for r in second} == {1, 2, 3, 4, 5}
    assert len({r.claim_token for r in first}) == 1
    assert first[0].claim_token != second[0].claim_token
    assert all(
        r.next_check_at > utcnow() + LEASE - dt.timedelta(seconds=5) for r in first
    )


def test_claim_due_never_commits_work_the_caller_has_pending(engine, sessions):
    add_items(engine, 2)
    with Session(engine) as caller:
        caller.execute(
            sa.text("INSERT INTO test_due_items (id, next_check_at) VALUES (7, now())")
        )
        claimed_rows = claim_due(sessions, DUE_ITEMS, limit=10, lease=LEASE)
        assert caller.in_transaction()
        assert set(due_rows(engine)) == {1, 2}, "the caller's row is not committed"
        with pytest.raises(TypeError, match="session factory"):
            claim_due(caller, DUE_ITEMS, limit=10, lease=LEASE)
        caller.rollback()
    assert {r.id for r in claimed_rows} == {1, 2}
    assert set(due_rows(engine)) == {1, 2}


def test_rows_come_due_again_when_the_lease_ends(engine, sessions):
    add_items(engine, 2)
    first = claim_due(
        sessions, DUE_ITEMS, limit=10, lease=dt.timedelta(milliseconds=300)
    )
    assert claim_due(sessions, DUE_ITEMS, limit=10, lease=LEASE) == []
    time.sleep(0.4)
    again = claim_due(sessions, DUE_ITEMS, limit=10, lease=LEASE)
    assert {r.id for r in again} == {r.id for r in first} == {1, 2}
    with sessions.begin() as session:
        complete_claim(session, DUE_ITEMS, 1, again[0].claim_token, next_due=None)
    assert due_rows(engine)[1].next_check_at is None
    assert due_rows(engine)[1].claim_token is None


def test_completing_a_claim_taken_over_raises_and_rolls_the_effect_back(
    engine, sessions
):
    add_items(engine, 1)
    (stale,) = claim_due(
        sessions, DUE_ITEMS, limit=1, lease=dt.timedelta(milliseconds=200)
    )
    time.sleep(0.3)
    (current,) = claim_due(sessions, DUE_ITEMS, limit=1, lease=LEASE)
    with sessions() as session:
        record_run(session, stale)
        with pytest.raises(StaleClaimError):
            complete_claim(session, DUE_ITEMS, 1, stale.claim_token, next_due=None)
        session.commit()  # a caller that swallows the error keeps nothing
    assert runs(engine) == [], "the effect of the stale claim is rolled back"
    row = due_rows(engine)[1]
    assert row.claim_token == current.claim_token != stale.claim_token
    assert row.next_check_at is not None


def test_concurrent_claims_never_overlap(engine):
    add_items(engine, 400)
    claimed_ids: list[list[int]] = [[] for _ in range(4)]
    barrier = threading.Barrier(4)

    sessions = make_session_factory(engine)

    def claimer(index):
        barrier.wait()
        while rows := claim_due(sessions, DUE_ITEMS, limit=7, lease=LEASE):
            claimed_ids[index].extend(r.id for r in rows)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    every = [i for ids in claimed_ids for i in ids]
    assert sorted(every) == list(range(1, 401))
    assert sum(1 for ids in claimed_ids if ids) > 1


def test_scheduler_runs_jobs_from_its_own_job_store_outside_the_drift_check(infra):
    name = f"chomik_sched_{uuid.uuid4().hex[:8]}"
    infra.cluster.create_databases([name])
    url = infra.cluster.url(name)
    migrating.upgrade("orders", url)
    engine = sa.create_engine(url)
    runs = []
    settings = Settings(database_url=url, scheduler_replica_id="Replica-A.1")
    scheduler = Scheduler(
        [Job("tick", lambda context: runs.append(context.replica_id), seconds=0.1)],
        settings=settings,
        engine=engine,
        sessions=make_session_factory(engine),
    )
    scheduler.start()
    try:
        wait_until(lambda: len(runs) >= 2, 10, 0.05)
    finally:
        scheduler.shutdown()
    assert set(runs) == {"Replica-A.1"}
    table = jobstore_table("Replica-A.1")
    assert table.startswith("apscheduler_jobs_replica_a_1_")
    assert (
        len({table, jobstore_table("replica_a_1"), jobstore_table("Replica_A_1")}) == 3
    )
    assert len(jobstore_table("x" * 300)) <= 63
    with engine.connect() as conn:
        assert conn.scalar(sa.text(f"SELECT count(*) FROM {table}")) == 1
    migrating.check("orders", url)
    engine.dispose()


def test_three_replicas_one_killed_mid_batch_each_row_once(infra, engine, tmp_path):
    add_items(engine, 120)
    env = {
        "DATABASE_URL": infra.urls["orders"],
        "TEST_LEASE": "1.5",
        "TEST_WORK": "0.03",
        "TEST_INTERVAL": "2",
    }
    replicas = {
        name: spawn(
            "tests.chomik.worker_child",
            {**env, "SCHEDULER_REPLICA_ID": name},
            tmp_path / f"{name}.log",
            "scheduler",
        )  # fmt: skip
        for name in (f"r1-{uuid.uuid4().hex[:4]}", "r2", "r3")
    }
    victim = next(iter(replicas))

    def runs_by(replica):
        with engine.connect() as conn:
            return conn.scalar(
                sa.text("SELECT count(*) FROM test_item_runs WHERE replica = :r"),
                {"r": replica},
            )

    try:
        wait_until(lambda: runs_by(victim) >= 3, 30, 0.02)
        replicas[victim].send_signal(signal.SIGKILL)
        replicas[victim].wait(10)
        # Rows the victim had claimed (its batch tokens) but not finished: the kill
        # landed mid-batch. Counted before their lease ends and others take them.
        with engine.connect() as conn:
            orphans = conn.scalar(
                sa.text(
                    "SELECT count(*) FROM test_due_items WHERE claim_token IN"
                    " (SELECT token FROM test_item_runs WHERE replica = :victim)"
                ),
                {"victim": victim},
            )
        with engine.connect() as conn:
            wait_until(lambda: conn.scalar(ROUNDS_DONE) >= 2, 30)
        time.sleep(0.3)  # a late duplicate would show up now
    finally:
        for name, process in replicas.items():
            if name != victim:
                process.send_signal(signal.SIGTERM)
        codes = [wait_or_kill(p) for n, p in replicas.items() if n != victim]
    assert codes == [0, 0]

    with engine.connect() as conn:
        runs = conn.execute(
            sa.text(
                "SELECT item_id, round, count(*) FROM test_item_runs"
                " WHERE round < 2 GROUP BY item_id, round"
            )
        ).all()
        replicas_that_ran = conn.scalars(
            sa.text("SELECT DISTINCT replica FROM test_item_runs")
        ).all()
    # Two intervals: every row ran exactly once in each, none was missed.
    assert sorted((item, rnd) for item, rnd, _ in runs) == [
        (item, rnd) for item in range(1, 121) for rnd in (0, 1)
    ]
    assert all(count == 1 for _, _, count in runs)
    assert orphans > 0, "the killed replica's unfinished claims were taken over"
    assert len(replicas_that_ran) == 3


def scheduler_of(infra, *jobs: Job) -> tuple[Scheduler, sa.Engine]:
    """A scheduler of `jobs` on a new database of its own, not started; its engine."""
    name = f"chomik_sched_{uuid.uuid4().hex[:8]}"
    infra.cluster.create_databases([name])
    url = infra.cluster.url(name)
    engine = sa.create_engine(url)
    scheduler = Scheduler(
        list(jobs),
        settings=Settings(database_url=url, scheduler_replica_id=f"r-{name}"),
        engine=engine,
        sessions=make_session_factory(engine),
    )
    return scheduler, engine


def test_idle_runs_back_off_to_idle_max_and_work_brings_the_interval_back(infra):
    runs: list[float] = []
    work = threading.Event()  # set: the next runs find something to do

    def tick(context):
        runs.append(time.monotonic())
        return {"done": 1 if work.is_set() else 0}

    scheduler, engine = scheduler_of(infra, Job("tick", tick, seconds=0.1, idle_max=2))
    scheduler.start()
    try:
        wait_until(lambda: len(runs) >= 6, 20, 0.05)
        gaps = [b - a for a, b in zip(runs, runs[1:], strict=False)]
        # 0.2, 0.4, 0.8, 1.6, 2.0 after the first idle runs (plus scheduling slack).
        assert (gaps[1] > 0.3, gaps[3] > 1.2, gaps[4] > 1.6) == (True,) * 3, gaps
        assert max(gaps) < 4, gaps
        work.set()
        wait_until(lambda: runs[-1] > time.monotonic() - 0.05, 5, 0.01)
        busy_from = len(runs)
        wait_until(lambda: len(runs) >= busy_from + 5, 5, 0.02)
        busy = [
            b - a for a, b in zip(runs[busy_from:], runs[busy_from + 1 :], strict=False)
        ]
        assert statistics.median(busy) < 0.5, busy  # back to every 0.1 s
    finally:
        scheduler.shutdown()
        engine.dispose()


def test_an_idle_job_is_put_off_no_later_than_its_next_due_row(infra):
    runs: list[float] = []

    def tick(context):
        runs.append(time.monotonic())
        counts = Counts(done=0)
        counts.next_due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=0.5)
        return counts

    scheduler, engine = scheduler_of(infra, Job("tick", tick, seconds=0.1, idle_max=30))
    scheduler.start()
    try:
        wait_until(lambda: len(runs) >= 8, 20, 0.05)
        gaps = [b - a for a, b in zip(runs, runs[1:], strict=False)]
        # 0.2, 0.4, then 0.5 (the row's time) where 0.8, 1.6, 3.2... would follow.
        assert all(0.4 < gap < 1.0 for gap in gaps[2:]), gaps
    finally:
        scheduler.shutdown()
        engine.dispose()


@pytest.mark.parametrize(
    ("result", "idle"),
    [(None, True), (0, True), ({}, True), ({"done": 0, "stale": 0}, True),
     ({"done": 0, "failed": 1}, False), (3, False), ("x", False)],
)  # fmt: skip
def test_a_run_found_nothing_when_its_result_is_empty_or_all_zero(result, idle):
    assert found_nothing(result) is idle


def test_the_idle_delay_doubles_up_to_idle_max():
    job = Job("j", lambda context: None, seconds=0.5, idle_max=3)
    assert [job.idle_delay(n) for n in range(6)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert Job("k", lambda context: None, seconds=2).idle_delay(5) == 2


def test_a_job_ending_idle_while_the_scheduler_shuts_down_does_not_hang_it(infra):
    running = threading.Event()

    def slow_idle(context):
        running.set()
        time.sleep(0.5)  # shutdown starts meanwhile and waits for this run
        return {"done": 0}

    scheduler, engine = scheduler_of(
        infra, Job("slow", slow_idle, seconds=0.1, idle_max=5)
    )
    scheduler.start()
    try:
        assert running.wait(10)
        stopping = threading.Thread(target=scheduler.shutdown, daemon=True)
        stopping.start()
        stopping.join(10)
        assert not stopping.is_alive(), "shutdown waits for the idle run forever"
    finally:
        engine.dispose()


def test_a_put_off_job_runs_at_once_when_its_channel_is_notified(infra):
    runs: list[float] = []

    def idle(context):
        runs.append(time.monotonic())
        return 0

    scheduler, engine = scheduler_of(
        infra, Job("woken", idle, seconds=0.1, idle_max=60, wake_channel="wake_me")
    )
    scheduler.start()
    try:
        wait_until(lambda: len(runs) >= 4, 20, 0.05)  # backing off: 0.2, 0.4, 0.8 s
        time.sleep(2)  # now put off by 1.6 s, then 3.2 s, ...
        before = len(runs)
        sessions = make_session_factory(engine)
        with sessions.begin() as session:
            notify_job(session, "wake_me")
            woken_at = time.monotonic()
        wait_until(lambda: len(runs) > before, 5, 0.01)
        assert runs[before] - woken_at < 1.0, "the notified job still waited"
    finally:
        scheduler.shutdown()
        engine.dispose()


def test_a_wake_up_during_a_run_keeps_the_job_on_its_interval(infra):
    started = threading.Event()
    release = threading.Event()
    runs: list[float] = []

    def slow(context):
        runs.append(time.monotonic())
        if len(runs) == 4:  # idle runs so far; this one is woken while it runs
            started.set()
            release.wait(5)
        return 0

    scheduler, engine = scheduler_of(
        infra, Job("slow", slow, seconds=0.1, idle_max=60, wake_channel="chan")
    )
    scheduler.start()
    try:
        assert started.wait(20)
        scheduler.wake("chan")
        release.set()
        wait_until(lambda: len(runs) >= 5, 5, 0.01)
        assert runs[4] - runs[3] < 1.0  # not put off by 1.6 s
    finally:
        scheduler.shutdown()
        engine.dispose()
