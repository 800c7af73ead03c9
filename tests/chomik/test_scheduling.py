"""Replica-safe jobs: `claim_due` leases, per-replica job stores, replicas that die."""

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
from chomik.jobs.scheduling import (
    Job,
    Scheduler,
    claim_due,
    complete_claim,
    jobstore_table,
)
from chomik.settings import Settings
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


def test_claim_due_takes_only_due_rows_sets_lease_and_token(engine):
    add_items(engine, 5)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO test_due_items (id, next_check_at) VALUES (99, now() + interval '1 hour')"
            )
        )
    with Session(engine) as session:
        first = claim_due(session, DUE_ITEMS, limit=3, lease=LEASE)
        assert not session.in_transaction(), "claim_due commits at once"
        second = claim_due(session, DUE_ITEMS, limit=3, lease=LEASE)
        third = claim_due(session, DUE_ITEMS, limit=3, lease=LEASE)
    assert len(first) == 3
    assert len(second) == 2
    assert third == []
    assert {r.id for r in first} | {r.id for r in second} == {1, 2, 3, 4, 5}
    assert len({r.claim_token for r in first}) == 1
    assert first[0].claim_token != second[0].claim_token
    assert all(
        r.next_check_at > utcnow() + LEASE - dt.timedelta(seconds=5) for r in first
    )


def test_rows_come_due_again_when_the_lease_ends(engine):
    add_items(engine, 2)
    with Session(engine) as session:
        claimed = claim_due(
            session, DUE_ITEMS, limit=10, lease=dt.timedelta(milliseconds=300)
        )
        assert claim_due(session, DUE_ITEMS, limit=10, lease=LEASE) == []
        time.sleep(0.4)
        again = claim_due(session, DUE_ITEMS, limit=10, lease=LEASE)
    assert {r.id for r in again} == {r.id for r in claimed} == {1, 2}
    # The first claim is stale now: finishing it changes nothing.
    with Session(engine) as session, session.begin():
        assert not complete_claim(
            session, DUE_ITEMS, 1, claimed[0].claim_token, next_due=None
        )
        assert complete_claim(
            session, DUE_ITEMS, 1, again[0].claim_token, next_due=None
        )
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT next_check_at, claim_token FROM test_due_items WHERE id = 1"
            )
        ).one()
    assert row == (None, None)


def test_concurrent_claims_never_overlap(engine):
    add_items(engine, 400)
    claimed: list[list[int]] = [[] for _ in range(4)]
    barrier = threading.Barrier(4)

    def claimer(index):
        barrier.wait()
        with Session(engine) as session:
            while rows := claim_due(session, DUE_ITEMS, limit=7, lease=LEASE):
                claimed[index].extend(r.id for r in rows)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    every = [i for ids in claimed for i in ids]
    assert sorted(every) == list(range(1, 401))
    assert sum(1 for ids in claimed if ids) > 1


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
        # Rows the victim had claimed but never ran: the kill landed mid-batch.
        # Every row ran once per round (below), so others took these over.
        orphans = conn.scalar(
            sa.text(
                "SELECT count(DISTINCT c.item_id) FROM test_item_claims c"
                " WHERE c.replica = :victim AND NOT EXISTS ("
                "   SELECT 1 FROM test_item_runs r"
                "   WHERE r.item_id = c.item_id AND r.replica = :victim)"
            ),
            {"victim": victim},
        )
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
