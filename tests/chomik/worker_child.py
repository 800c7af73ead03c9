"""Child processes of the messaging tests: `python -m tests.chomik.worker_child MODE`.

Modes: `relay` (a relay whose sends are slowed, to be killed mid-batch), `consumer`
(a worker consuming `TEST_TOPIC` into `test_effects`), `full` (relay and consumer),
`scheduler` (a worker whose job sweeps `test_due_items` with leases). Settings come
from the environment like any worker's.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import sys
import threading
import time
from typing import Any

import sqlalchemy as sa

from chomik.db import utcnow
from chomik.jobs.scheduling import Job, JobContext, claim_due, complete_claim
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


class StaleClaimError(Exception):
    """The lease ran out and another replica owns the row: undo our effect."""


def sweep(context: JobContext) -> None:
    """Claim due items in batches and handle each once, fenced by the claim token."""
    lease = dt.timedelta(seconds=float(os.environ.get("TEST_LEASE", "1.5")))
    work = float(os.environ.get("TEST_WORK", "0.02"))
    interval = dt.timedelta(seconds=float(os.environ.get("TEST_INTERVAL", "3600")))
    while not context.stopping.is_set():
        with context.sessions() as session:
            rows = claim_due(session, DUE_ITEMS, limit=10, lease=lease)
        if not rows:
            return
        with context.sessions.begin() as session:
            session.execute(
                sa.text(
                    "INSERT INTO test_item_claims (item_id, replica, token)"
                    " VALUES (:id, :replica, :token)"
                ),
                [
                    {"id": r.id, "replica": context.replica_id, "token": r.claim_token}
                    for r in rows
                ],
            )
        for row in rows:
            if context.stopping.is_set():
                return
            time.sleep(work)
            with (
                contextlib.suppress(StaleClaimError),
                context.sessions.begin() as session,
            ):
                session.execute(
                    sa.text(
                        "INSERT INTO test_item_runs (item_id, round, replica)"
                        " VALUES (:id, :round, :replica)"
                    ),
                    {"id": row.id, "round": row.round, "replica": context.replica_id},
                )
                done = complete_claim(
                    session,
                    DUE_ITEMS,
                    row.id,
                    row.claim_token,
                    next_due=utcnow() + interval,
                    values={"round": row.round + 1},
                )
                if not done:
                    raise StaleClaimError(row.id)


def main(mode: str) -> int:
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
        job = Job("sweep", sweep, seconds=0.1)
        return Worker("sched", settings, jobs=[job], relay=False).run()
    raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
