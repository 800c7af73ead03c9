"""Events through the real broker: raw producer, outbox relay, emit-to-handler latency.

Starts a private PostgreSQL (`chomik.infra.PostgresCluster`, migrated `orders`
database) and a Tansu broker (`chomik.infra.KafkaBroker`), then measures:

- baseline: the raw idempotent producer (`acks=all`), keyed sends of envelopes of the
  same size, flushed at the end;
- relay throughput: a backlog of committed outbox rows drained by 1 and by 2 relay
  replicas (separate processes), events per second from start to empty outbox;
- latency: events emitted one per transaction at a steady rate while the relays run,
  from `emit` (the envelope's `occurred_at`) to the consumer's handler, p50 and p99.

Usage: `python benchmarks/bench_events.py [--events 20000] [--rate 200] [--seconds 5]`.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from chomik import migrating
from chomik.db import utcnow
from chomik.infra import KafkaBroker, free_port, private_cluster
from chomik.messaging.consuming import Consumer
from chomik.messaging.kafka import (
    Envelope,
    Event,
    ensure_topics,
    envelope_of,
    make_producer,
)
from chomik.messaging.outbox import Relay, emit, emit_envelope

TOPIC = "bench.events"
WARM_UP = "bench.warm-up"
KEYS = 500
PARTITIONS = 8


@dataclass(frozen=True)
class BenchEvent(Event):
    type = "bench.event"
    topic = TOPIC

    entity_id: str
    n: int
    payload: str = "x" * 200


def pending(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        count: int = conn.scalar(
            sa.text("SELECT count(*) FROM outbox_events WHERE sent_at IS NULL")
        )
    return count


def fill_outbox(engine: sa.Engine, count: int) -> None:
    with Session(engine) as session, session.begin():
        for n in range(count):
            emit(session, BenchEvent(f"entity-{n % KEYS}", n))


def raw_producer(bootstrap: str, count: int) -> float:
    values = [
        (envelope.key.encode(), envelope.to_json())
        for envelope in (
            envelope_of(BenchEvent(f"entity-{n % KEYS}", n)) for n in range(count)
        )
    ]
    producer = make_producer(bootstrap)
    producer.send(WARM_UP, key=b"warm-up", value=b"{}").get(10)
    started = time.perf_counter()
    for key, value in values:
        producer.send(TOPIC, key=key, value=value)
    producer.flush(120)
    elapsed = time.perf_counter() - started
    producer.close()
    return count / elapsed


def relay_replica(url: str, bootstrap: str, ready: Any, go: Any, stop: Any) -> None:
    """A relay process: warm up, wait for the start signal, publish until told."""
    engine = sa.create_engine(url)
    relay = Relay(engine, bootstrap)
    relay.producer.send(WARM_UP, key=b"warm-up", value=b"{}").get(10)
    ready.release()
    go.wait()
    relay.run(stop)
    engine.dispose()


def start_relays(url: str, bootstrap: str, replicas: int) -> tuple[list[Any], Any, Any]:
    ctx = mp.get_context("spawn")
    ready, go, stop = ctx.Semaphore(0), ctx.Event(), ctx.Event()
    processes = [
        ctx.Process(target=relay_replica, args=(url, bootstrap, ready, go, stop))
        for _ in range(replicas)
    ]
    for process in processes:
        process.start()
    for _ in processes:
        ready.acquire()
    return processes, go, stop


def stop_relays(processes: list[Any], stop: Any) -> None:
    stop.set()
    for process in processes:
        process.join(30)


def relay_throughput(engine: sa.Engine, url: str, bootstrap: str, replicas: int,
                     count: int) -> float:  # fmt: skip
    fill_outbox(engine, count)
    processes, go, stop = start_relays(url, bootstrap, replicas)
    started = time.perf_counter()
    go.set()
    while pending(engine):
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    stop_relays(processes, stop)
    return count / elapsed


def latency(engine: sa.Engine, url: str, bootstrap: str, replicas: int, rate: float,
            seconds: float) -> tuple[float, float, int]:  # fmt: skip
    samples: dict[uuid.UUID, float] = {}
    lock = threading.Lock()

    emitted: set[uuid.UUID] = set()

    def handler(session: Session, envelope: Envelope) -> None:
        delay = (utcnow() - envelope.occurred_at).total_seconds()
        with lock:
            if envelope.id in emitted:
                samples[envelope.id] = delay

    consumer = Consumer(
        group_id=f"bench-{uuid.uuid4().hex[:6]}",
        bootstrap_servers=bootstrap,
        sessions=sessionmaker(bind=engine),
        consumers={"bench.latency": handler},
        topics=[TOPIC],
        consumer_options={"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000,
                          "auto_offset_reset": "latest"},
    )  # fmt: skip
    halt = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(halt,))
    thread.start()
    time.sleep(4)  # the group's first assignment
    processes, go, stop = start_relays(url, bootstrap, replicas)
    go.set()
    total = int(rate * seconds)
    started = time.perf_counter()
    for n in range(total):
        envelope = _as_latency(envelope_of(BenchEvent(f"entity-{n % KEYS}", n)))
        with lock:
            emitted.add(envelope.id)
        with Session(engine) as session, session.begin():
            emit_envelope(session, envelope, topic=TOPIC)
        pause = started + (n + 1) / rate - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    deadline = time.monotonic() + 30
    while len(samples) < total and time.monotonic() < deadline:
        time.sleep(0.05)
    stop_relays(processes, stop)
    halt.set()
    thread.join(15)
    ordered = sorted(samples.values())
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
    return p50, p99, len(ordered)


def _as_latency(envelope: Envelope) -> Envelope:
    """The same envelope under the type only the latency consumer handles."""
    return Envelope(envelope.id, "bench.latency", utcnow(), envelope.key, envelope.data,
                    envelope.request_id)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()

    with (
        private_cluster("chomik-bench-events-", durable=False) as cluster,
        KafkaBroker(
            port=free_port(), log_path=cluster.base_dir.parent / "tansu.log"
        ) as broker,
    ):
        cluster.create_databases(["chomik_orders"])
        url = cluster.url("chomik_orders")
        migrating.upgrade("orders", url)
        engine = sa.create_engine(url)
        bootstrap = broker.bootstrap_servers
        ensure_topics(bootstrap, [TOPIC], partitions=PARTITIONS)

        print(f"events: {args.events}, keys: {KEYS}, partitions: {PARTITIONS}, "
              f"payload ~{len(envelope_of(BenchEvent('entity-0', 0)).to_json())} B")  # fmt: skip
        print(
            f"raw producer baseline        {raw_producer(bootstrap, args.events):9.0f} events/s"
        )
        for replicas in (1, 2):
            rate = relay_throughput(engine, url, bootstrap, replicas, args.events)
            print(
                f"relay, {replicas} replica{'s' if replicas > 1 else ' '}            {rate:9.0f} events/s"
            )
        for replicas in (1, 2):
            p50, p99, n = latency(
                engine, url, bootstrap, replicas, args.rate, args.seconds
            )
            print(f"emit->handler, {replicas} relay{'s' if replicas > 1 else ' '}    "
                  f"p50 {p50:6.1f} ms   p99 {p99:6.1f} ms   ({n} events at {args.rate:.0f}/s)")  # fmt: skip
        engine.dispose()


if __name__ == "__main__":
    main()
