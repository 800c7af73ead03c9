"""The worker process: relay, consumer and jobs together; JSON logs; SIGTERM."""

from __future__ import annotations

import json
import signal
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from chomik.logs import request_id_var
from chomik.messaging.kafka import ensure_topics
from chomik.messaging.outbox import emit
from tests.chomik.messaging_helpers import (
    EFFECTS_DDL,
    SCHEDULE_DDL,
    Ping,
    scratch_tables,
    spawn,
    wait_or_kill,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("committed_db")


@pytest.fixture
def engine(infra):
    with scratch_tables(infra.engine("orders"), EFFECTS_DDL) as engine:
        yield engine


def emit_pings(engine, topic, pings, request_id):
    token = request_id_var.set(request_id)
    try:
        with Session(engine) as session, session.begin():
            for ping in pings:
                emit(session, ping, topic=topic)
    finally:
        request_id_var.reset(token)


def count(engine, sql):
    with engine.connect() as conn:
        return conn.scalar(sa.text(sql))


def log_lines(path):
    lines = []
    for raw in path.read_text().splitlines():
        if raw.startswith("{"):
            lines.append(json.loads(raw))
    return lines


def committed_offsets(bootstrap, group, topic, partitions=3):
    """The sum of the group's committed offsets on the topic (no group join)."""
    from kafka import KafkaConsumer, TopicPartition

    reader = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    try:
        offsets = [
            reader.committed(TopicPartition(topic, p)) for p in range(partitions)
        ]
    finally:
        reader.close()
    return sum(offset or 0 for offset in offsets)


def test_worker_relays_consumes_and_stops_gracefully_on_sigterm(
    infra, engine, tmp_path
):
    topic = f"test.worker.{uuid.uuid4().hex[:8]}"
    ensure_topics(infra.kafka, [topic], partitions=3)
    env = {
        "DATABASE_URL": infra.urls["orders"],
        "KAFKA_BOOTSTRAP_SERVERS": infra.kafka,
        "TEST_APP": f"w{uuid.uuid4().hex[:6]}",
        "TEST_TOPIC": topic,
    }
    log = tmp_path / "worker.log"
    worker = spawn("tests.chomik.worker_child", env, log, "full")
    try:
        emit_pings(engine, topic, [Ping("w", n) for n in range(300)], "req-worker")
        emit_pings(engine, topic, [Ping("p", 0, fail="always")], "req-poison")
        # Stop it mid-stream: it finishes the current message, commits, leaves.
        wait_until(lambda: count(engine, "SELECT count(*) FROM test_effects") >= 50, 30)
        worker.send_signal(signal.SIGTERM)
        assert wait_or_kill(worker) == 0
    finally:
        wait_or_kill(worker, 0.1)
    # Whatever it applied before stopping, it committed: nothing is read twice.
    applied = count(engine, "SELECT count(*) FROM test_effects")
    committed = committed_offsets(infra.kafka, f"chomik-{env['TEST_APP']}", topic)
    assert applied <= committed <= applied + 1  # + the poison, if it got that far
    worker = spawn("tests.chomik.worker_child", env, log, "full")
    try:
        wait_until(
            lambda: count(engine, "SELECT count(*) FROM test_effects") >= 300, 30
        )
        wait_until(lambda: "dead-lettering" in log.read_text(), 20)
        worker.send_signal(signal.SIGTERM)
        assert wait_or_kill(worker) == 0
    finally:
        wait_or_kill(worker, 0.1)

    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT n, request_id FROM test_effects ORDER BY serial")
        ).all()
    assert [n for n, _ in rows] == list(range(300))
    assert {rid for _, rid in rows} == {"req-worker"}
    lines = log_lines(log)
    dead = [line for line in lines if "dead-lettering" in line["message"]]
    assert dead
    assert dead[0]["request_id"] == "req-poison"
    assert sum("stopped" in line["message"] for line in lines) == 2


def test_a_worker_stops_on_sigint_then_sigterm_at_once(infra, tmp_path):
    """`chomik run` stops a child with SIGINT and then, at once, SIGTERM. The second
    signal, arriving while the first is still pending in the main thread, goes to
    another thread; it must still end the main thread's wait (it did not, about one
    stop in two, when every thread could take the signals)."""
    with scratch_tables(infra.engine("orders"), SCHEDULE_DDL):
        env = {"DATABASE_URL": infra.urls["orders"]}
        logs = [tmp_path / f"worker-{n}.log" for n in range(6)]
        workers = [
            spawn("tests.chomik.worker_child", env, log, "scheduler") for log in logs
        ]
        try:
            for log in logs:
                wait_until(lambda log=log: "Resumed scheduler" in log.read_text(), 30)
            for worker in workers:
                worker.send_signal(signal.SIGINT)
                worker.send_signal(signal.SIGTERM)
            codes = [wait_or_kill(worker, 8) for worker in workers]
        finally:
            for worker in workers:
                wait_or_kill(worker, 0.1)
    assert codes == [0] * len(workers)


def test_worker_creates_the_topics_it_consumes_and_produces_with_their_dlqs(infra):
    from kafka import KafkaAdminClient

    from chomik.settings import Settings
    from chomik.worker import Worker

    suffix = uuid.uuid4().hex[:8]
    consumed, produced = f"test.in.{suffix}", f"test.out.{suffix}"
    settings = Settings(
        database_url=infra.urls["orders"],
        kafka_bootstrap_servers=infra.kafka,
        topic_partitions=3,
    )
    worker = Worker(
        "topics", settings, topics=[consumed], produces=[produced], relay=False
    )
    worker.start()
    worker.stop()
    worker.join()
    expected = {consumed, f"{consumed}.dlq", produced, f"{produced}.dlq"}
    admin = KafkaAdminClient(bootstrap_servers=infra.kafka)
    try:
        existing = set(admin.list_topics())
        described = admin.describe_topics(sorted(expected & existing))
    finally:
        admin.close()
    assert expected <= existing
    assert {len(topic["partitions"]) for topic in described} == {3}
