"""Shared pieces of the messaging tests and their child processes."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from prometheus_client import REGISTRY
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from chomik.db import make_session_factory
from chomik.messaging.consuming import Consumer
from chomik.messaging.kafka import Envelope, Event, make_producer

ROOT = Path(__file__).resolve().parents[2]

# Fast group membership against the local Tansu broker.
FAST_GROUP = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}


@dataclass(frozen=True)
class Ping(Event):
    """A test event: the n-th event of entity `key`."""

    type = "test.ping"
    topic = "test.pings"

    key_id: str
    n: int
    fail: str = ""


EFFECTS_DDL = """
CREATE TABLE IF NOT EXISTS test_effects (
    serial bigserial PRIMARY KEY,
    key text NOT NULL,
    n integer NOT NULL,
    pid integer NOT NULL,
    request_id text
)
"""

SCHEDULE_DDL = """
CREATE TABLE IF NOT EXISTS test_due_items (
    id integer PRIMARY KEY,
    round integer NOT NULL DEFAULT 0,
    next_check_at timestamptz,
    claim_token uuid
);
CREATE TABLE IF NOT EXISTS test_item_runs (
    serial bigserial PRIMARY KEY,
    item_id integer NOT NULL,
    round integer NOT NULL,
    replica text NOT NULL,
    token uuid NOT NULL
)
"""


def create_tables(engine: Engine, ddl: str) -> None:
    """Create test-only tables with plain SQL (never `metadata.create_all`)."""
    with engine.begin() as conn:
        for statement in ddl.split(";"):
            if statement.strip():
                conn.execute(sa.text(statement))


def drop_tables(engine: Engine, ddl: str) -> None:
    """Drop the tables `ddl` created, so the service schema matches its models again."""
    names = re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", ddl)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {', '.join(names)}"))


@contextlib.contextmanager
def scratch_tables(engine: Engine, ddl: str) -> Iterator[Engine]:
    """Test-only tables for the duration of a block."""
    create_tables(engine, ddl)
    try:
        yield engine
    finally:
        drop_tables(engine, ddl)


def record_effect(session: Session, event: Any) -> None:
    """The consumers' effect: one row per applied event (no unique constraint)."""
    from chomik.logs import current_request_id

    if event.fail == "always":
        raise RuntimeError(f"poison event {event.key_id}/{event.n}")
    session.execute(
        sa.text(
            "INSERT INTO test_effects (key, n, pid, request_id)"
            " VALUES (:key, :n, :pid, :rid)"
        ),
        {
            "key": event.key_id,
            "n": event.n,
            "pid": os.getpid(),
            "rid": current_request_id(),
        },
    )


def wait_until(
    predicate: Callable[[], Any], timeout: float, interval: float = 0.1
) -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def read_topic(
    bootstrap: str, topic: str, *, timeout: float = 15.0
) -> list[ConsumerRecord]:
    """Every message currently in `topic`, from the beginning (no consumer group)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = wait_until(lambda: consumer.partitions_for_topic(topic), timeout)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {topic} to its end")
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def topic_size(bootstrap: str, topic: str) -> int:
    """How many messages `topic` holds."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in partitions]
        return sum(consumer.end_offsets(tps).values()) if tps else 0
    finally:
        consumer.close()


def envelopes(records: list[ConsumerRecord]) -> list[Envelope]:
    return [Envelope.from_json(r.value) for r in records]


def spawn(
    module: str, env: dict[str, str], log_path: Path, *args: str
) -> subprocess.Popen[bytes]:
    """Run `python -m module` from the repository root; stderr goes to `log_path`."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


DUE_ITEMS = sa.Table(
    "test_due_items",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("round", sa.Integer, nullable=False),
    sa.Column("next_check_at", sa.DateTime(timezone=True)),
    sa.Column("claim_token", sa.Uuid(as_uuid=True)),
)


def wait_or_kill(process: subprocess.Popen[bytes], timeout: float = 15.0) -> int | None:
    """The exit status of a child told to stop; None (after SIGKILL) if it hangs."""
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return None


def publish(bootstrap: str, topic: str, values: list[Any], headers: Any = None) -> None:
    """Send raw message values (bytes) or envelopes, keyed, and wait for the acks."""
    producer = make_producer(bootstrap)
    try:
        for value in values:
            if isinstance(value, Envelope):
                key, raw = value.key.encode(), value.to_json()
            else:
                key, raw = b"raw", value
            producer.send(topic, key=key, value=raw, headers=headers or [])
        producer.flush(10)
    finally:
        producer.close()


def effects(engine: Engine) -> list[Any]:
    """The test consumers' effects, `(key, n)` in the order they were applied."""
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT key, n FROM test_effects ORDER BY serial")
        ).all()


def metric(name: str, **labels: str) -> float:
    """A sample of the default registry (0 when it was never set)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


@contextlib.contextmanager
def consuming(
    infra: Any, engine: Engine, topic: str, handlers: Any, **options: Any
) -> Iterator[Consumer]:
    """A `Consumer` of `topic` in a new group, run in a thread for a block."""
    consumer = Consumer(
        group_id=f"test-{uuid.uuid4().hex[:8]}",
        bootstrap_servers=infra.kafka,
        sessions=make_session_factory(engine),
        consumers=handlers,
        topics=[topic],
        **{"consumer_options": FAST_GROUP, "event_types": {Ping.type: Ping}, **options},
    )
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,))
    thread.start()
    try:
        yield consumer
    finally:
        stop.set()
        thread.join(15)
        assert not thread.is_alive()
