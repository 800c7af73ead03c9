"""The kit's own jobs: every worker runs them; job stores of replicas gone are dropped."""

from __future__ import annotations

import datetime as dt
import time
import uuid

import pytest
import sqlalchemy as sa

from chomik.db import make_session_factory
from chomik.jobs.housekeeping import KIT_JOBS, drop_stale_jobstores
from chomik.jobs.scheduling import Job, JobContext, Scheduler, jobstore_table
from chomik.settings import Settings
from chomik.signing import remember_signature
from chomik.worker import Worker

pytestmark = pytest.mark.usefixtures("committed_db")


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


def _kit_job(name):
    (job,) = [job for job in KIT_JOBS if job.name == name]
    return job


def test_the_kit_jobs_prune_expired_idempotency_keys_and_signatures(infra):
    """Orders keeps idempotency keys, payment seen signatures: each pruned where held."""
    now = dt.datetime.now(dt.UTC)
    orders, payment = infra.engine("orders"), infra.engine("payment")
    scope = f"test.prune:{uuid.uuid4()}"
    with orders.begin() as conn:
        for key, expires in (
            ("old", now - dt.timedelta(hours=1)),
            ("live", now + dt.timedelta(hours=1)),
        ):
            conn.execute(
                sa.text(
                    "INSERT INTO idempotency_keys (scope, key, fingerprint, expires_at)"
                    " VALUES (:scope, :key, 'f', :expires)"
                ),
                {"scope": scope, "key": key, "expires": expires},
            )
    long_gone, recent = (f"t={n},v1={uuid.uuid4().hex}" for n in (1, 2))
    with make_session_factory(payment).begin() as session:
        assert remember_signature(
            session, long_gone, expires_at=now - dt.timedelta(days=2)
        )
        assert remember_signature(
            session, recent, expires_at=now - dt.timedelta(hours=1)
        )

    def run(job, engine, app):
        return job.func(JobContext(Settings(), make_session_factory(engine), app))

    assert run(_kit_job("prune_idempotency_keys"), orders, "orders") >= 1
    assert run(_kit_job("prune_idempotency_keys"), payment, "payment") is None
    assert run(_kit_job("prune_seen_signatures"), payment, "payment") >= 1
    assert run(_kit_job("prune_seen_signatures"), orders, "orders") is None
    with orders.connect() as conn:
        left = conn.scalars(
            sa.text("SELECT key FROM idempotency_keys WHERE scope = :scope"),
            {"scope": scope},
        ).all()
    assert left == ["live"]
    with make_session_factory(payment).begin() as session:
        later = now + dt.timedelta(days=3)
        # Expired an hour ago: kept through the grace for consumers that lag.
        assert not remember_signature(session, recent, expires_at=later)
        # Expired two days ago: pruned, so it is new again.
        assert remember_signature(session, long_gone, expires_at=later)
