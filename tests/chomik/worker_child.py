"""Child processes of the messaging tests: `python -m tests.chomik.worker_child MODE`.

Modes: `relay` (a relay whose sends are slowed, to be killed mid-batch), `consumer`
(a worker consuming `TEST_TOPIC` into `test_effects`), `full` (relay and consumer),
`scheduler` (a worker whose claimed job sweeps `test_due_items`). Settings come
from the environment like any worker's.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import sys
import threading
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from chomik.db import utcnow
from chomik.jobs.runner import claimed
from chomik.jobs.scheduling import Job
from chomik.logs import configure_logging
from chomik.messaging.kafka import make_producer
from chomik.messaging.outbox import Relay, RelayConfig
from chomik.settings import Settings
from chomik.worker import Worker
from tests.chomik.messaging_helpers import DUE_ITEMS, FAST_GROUP, Ping, record_effect


class SlowProducer:
    """A real producer whose `send` takes a little longer (widens the crash window)."""

    def __init__(self, bootstrap: str, delay: float) -> None:
        self.inner = make_producer(bootstrap)
        self.delay = delay

    def send(self, *args: Any, **kwargs: Any) -> Any:
        time.sleep(self.delay)
        return self.inner.send(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def run_relay(settings: Settings) -> int:
    configure_logging("test-relay", "INFO")
    engine = sa.create_engine(settings.database_url)
    delay = float(os.environ.get("TEST_SEND_DELAY", "0"))
    relay = Relay(
        engine,
        settings.kafka_bootstrap_servers,
        config=RelayConfig(batch_size=int(os.environ.get("TEST_BATCH", "100"))),
        producer_factory=lambda: SlowProducer(settings.kafka_bootstrap_servers, delay),
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    relay.run(stop)
    return 0


def run_item(session: Session, row: Any) -> dt.datetime:
    """The sweep's effect on one due item: record the run, move to the next round."""
    time.sleep(float(os.environ.get("TEST_WORK", "0.02")))
    session.execute(
        sa.text(
            "INSERT INTO test_item_runs (item_id, round, replica, token)"
            " VALUES (:id, :round, :replica, :token)"
        ),
        {"id": row.id, "round": row.round, "token": row.claim_token,
         "replica": os.environ["SCHEDULER_REPLICA_ID"]},
    )  # fmt: skip
    session.execute(
        sa.update(DUE_ITEMS).where(DUE_ITEMS.c.id == row.id).values(round=row.round + 1)
    )
    interval = float(os.environ.get("TEST_INTERVAL", "3600"))
    return utcnow() + dt.timedelta(seconds=interval)


def sweep_job() -> Job:
    """Every due item, once per interval, over any number of replicas."""
    lease = dt.timedelta(seconds=float(os.environ.get("TEST_LEASE", "1.5")))
    return claimed("sweep", DUE_ITEMS, run_item, seconds=0.1, lease=lease, batch=10)


def main(mode: str) -> int:
    # Each process is a replica of its own, as each pod is: replicas sharing one
    # APScheduler job store run jobs twice (and race to create its table).
    os.environ.setdefault("SCHEDULER_REPLICA_ID", f"{mode}-{os.getpid()}")
    settings = Settings.from_env()
    if mode == "relay":
        return run_relay(settings)
    topic = os.environ.get("TEST_TOPIC", Ping.topic)
    if mode in ("consumer", "full"):
        worker = Worker(
            os.environ["TEST_APP"],
            settings,
            consumers={Ping.type: record_effect},
            event_types={Ping.type: Ping},
            topics=[topic],
            relay=mode == "full",
            consumer_options=FAST_GROUP,
        )
        return worker.run()
    if mode == "scheduler":
        return Worker("sched", settings, jobs=[sweep_job()], relay=False).run()
    raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
