"""Replica-safe jobs: leases, the claimed-job runner, exclusive jobs, job stores."""

from __future__ import annotations

import datetime as dt
import signal
import threading
import time
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from chomik import migrating
from chomik.db import make_session_factory, utcnow
from chomik.jobs.housekeeping import KIT_JOBS, drop_stale_jobstores
from chomik.jobs.runner import claimed, exclusive, try_lock
from chomik.jobs.scheduling import (
    Job,
    JobContext,
    Scheduler,
    StaleClaimError,
    claim_due,
    complete_claim,
    jobstore_table,
)
from chomik.settings import Settings
from chomik.worker import Worker
from tests.chomik.messaging_helpers import (
    DUE_ITEMS,
    SCHEDULE_DDL,
    scratch_tables,
    spawn,
    wait_or_kill,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("committed_db")

LEASE = dt.timedelta(seconds=30)
ROUNDS_DONE = sa.text("SELECT min(round) FROM test_due_items")


@pytest.fixture
def engine(infra):
    with scratch_tables(infra.engine("orders"), SCHEDULE_DDL) as engine:
        yield engine


@pytest.fixture
def sessions(engine):
    return make_session_factory(engine)


@pytest.fixture
def context(sessions):
    return JobContext(Settings(), sessions, "test-replica")


def due_rows(engine):
    with engine.connect() as conn:
        return {
            row.id: row
            for row in conn.execute(sa.select(DUE_ITEMS).order_by(DUE_ITEMS.c.id))
        }


def runs(engine):
    with engine.connect() as conn:
        return (
            conn.execute(sa.text("SELECT item_id FROM test_item_runs ORDER BY serial"))
            .scalars()
            .all()
        )


def record_run(session, row):
    """A row handler: one run row per call, due again in an hour."""
    session.execute(
        sa.text(
            "INSERT INTO test_item_runs (item_id, round, replica, token)"
            " VALUES (:id, :round, 'test', :token)"
        ),
        {"id": row.id, "round": row.round, "token": row.claim_token},
    )
    return utcnow() + dt.timedelta(hours=1)


def add_items(engine, count, *, due=True):
    when = "now() - interval '1 second'" if due else "now() + interval '1 hour'"
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO test_due_items (id, next_check_at)"
                f" SELECT g, {when} FROM generate_series(1, :n) g"
            ),
            {"n": count},
        )


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
    assert job.func(context)["done"] == 0, "nothing is due any more"
    rows = due_rows(engine)
    assert all(rows[i].claim_token is None for i in rows)
    assert all(
        rows[i].next_check_at > utcnow() + dt.timedelta(minutes=59) for i in rows
    )


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

    job = claimed("sweep", DUE_ITEMS, handle, seconds=1, lease=LEASE, batch=10)
    counts = job.func(context)
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


def test_the_message_prune_skips_a_database_without_messaging_tables(infra):
    (prune,) = [job for job in KIT_JOBS if job.name == "prune_messages"]
    gateway = JobContext(
        Settings(), make_session_factory(infra.engine("gateway")), "gateway-test"
    )
    orders = JobContext(
        Settings(), make_session_factory(infra.engine("orders")), "orders-test"
    )
    assert prune.func(gateway) is None
    assert prune.func(orders) == (0, 0)


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


def test_the_job_store_of_a_replica_not_seen_for_a_day_is_dropped(infra):
    engine = infra.engine("orders")
    sessions = make_session_factory(engine)
    settings = Settings(database_url=infra.urls["orders"])
    live = Scheduler(
        [Job("tick", lambda context: None, seconds=3600)],
        settings=settings, engine=engine, sessions=sessions,
        replica_id=f"live-{uuid.uuid4().hex[:6]}",
    )  # fmt: skip
    two_days = time.time() - 2 * 86400
    fabricated = {  # table: next run times of its jobs
        jobstore_table("dead-pod-x7k2"): [two_days, two_days + 60],
        jobstore_table("half-dead"): [two_days, time.time() - 3600],
        jobstore_table("just-starting"): [],
        jobstore_table("me"): [two_days],
    }
    with engine.begin() as conn:
        for table, times in fabricated.items():
            conn.execute(
                sa.text(
                    f"CREATE TABLE {table} (id varchar(191) PRIMARY KEY,"
                    " next_run_time double precision, job_state bytea NOT NULL)"
                )
            )
            for index, when in enumerate(times):
                conn.execute(
                    sa.text(f"INSERT INTO {table} VALUES (:id, :t, '')"),
                    {"id": f"job{index}", "t": when},
                )
    live.start()
    try:
        with sessions.begin() as session:
            dropped = drop_stale_jobstores(
                session, own_table=jobstore_table("me"),
                older_than=dt.timedelta(days=1),
            )  # fmt: skip
        with engine.connect() as conn:
            left = set(sa.inspect(conn).get_table_names())
    finally:
        live.shutdown()
        with engine.begin() as conn:
            for table in [*fabricated, live.table]:
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
    assert dropped == [jobstore_table("dead-pod-x7k2")]
    assert live.table in left, "a running replica's table stays"
    assert {jobstore_table(n) for n in ("half-dead", "just-starting", "me")} <= left


def test_every_worker_runs_the_kit_jobs_beside_its_own(infra):
    settings = Settings(database_url=infra.urls["orders"])
    own = Job("tick", lambda context: None, seconds=60)
    worker = Worker("orders", settings, jobs=[own], relay=False)
    try:
        assert [job.name for job in worker.jobs] == [
            *(job.name for job in KIT_JOBS),
            "tick",
        ]
    finally:
        worker.engine.dispose()
    with pytest.raises(ValueError, match="repeat"):
        Worker("orders", settings, jobs=[own, own], relay=False)
