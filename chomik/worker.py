"""The worker process of an app: outbox relay, Kafka consumers and scheduled jobs.

An app's `build_worker(settings)` returns `Worker(app, settings, consumers=CONSUMERS,
jobs=JOBS, produces=[...])`; `chomik worker <app>` calls `.run()`. Every worker also
runs the kit's own jobs (`chomik.jobs.housekeeping.KIT_JOBS`). At start it creates
the topics it consumes and produces (each with its `.dlq`) if they are missing.
SIGTERM (or SIGINT) stops it gracefully: the consumer finishes the current message,
commits its offset and leaves the group, the relay finishes its batch, running jobs
complete.

With a metrics port set, the worker serves `/health/live`, `/health/ready` and
`/metrics` there (`chomik.probes`). Ready means: the database answers; the broker
answers (when the worker relays, consumes or produces); the consumer has partitions
assigned (when it has consumers); the scheduler is running (when it has jobs).
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import FrameType
from typing import Any

import sqlalchemy as sa
from kafka.errors import KafkaError

from chomik.db import make_engine, make_session_factory
from chomik.jobs.housekeeping import KIT_JOBS
from chomik.jobs.scheduling import Job, Scheduler
from chomik.logs import configure_logging
from chomik.messaging.consuming import Consumer, Handler, HandlerKey, topics_of
from chomik.messaging.kafka import Event, ensure_topics, split_servers
from chomik.messaging.outbox import Relay, RelayConfig
from chomik.probes import ProbeServer, ReadyCheck
from chomik.settings import Settings

log = logging.getLogger(__name__)


class Worker:
    """Runs an app's relay, consumers and jobs until told to stop."""

    def __init__(
        self,
        app: str,
        settings: Settings,
        *,
        consumers: Mapping[HandlerKey, Handler] | None = None,
        jobs: Sequence[Job] = (),
        topics: Iterable[str] = (),
        produces: Iterable[str] = (),
        relay: bool = True,
        kit_jobs: bool = True,
        relay_config: RelayConfig | None = None,
        consumer_options: Mapping[str, Any] | None = None,
        max_attempts: int = 4,
        metrics_port: int | None = None,
        event_types: Mapping[str, type[Event]] | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.consumers = dict(consumers or {})
        self.jobs = [*(KIT_JOBS if kit_jobs else ()), *jobs]
        names = [job.name for job in self.jobs]
        if len(set(names)) != len(names):
            raise ValueError(f"worker {app}: job names repeat: {sorted(names)}")
        self.topics = topics_of(self.consumers, topics)
        self.produces = sorted(set(produces))
        self.with_relay = relay
        self.relay_config = relay_config
        self.consumer_options = consumer_options
        self.event_types = event_types
        self.max_attempts = max_attempts
        self.metrics_port = metrics_port or settings.metrics_port or None
        self.group_id = f"chomik-{app}"
        self.stop_event = threading.Event()
        self._threads: list[threading.Thread] = []
        self._scheduler: Scheduler | None = None
        self._consumer: Consumer | None = None
        self._relay: Relay | None = None
        self._probes: ProbeServer | None = None
        self.stopped_cleanly = False  # every part ended within the stop's budget
        self._failed = False
        self.engine = make_engine(settings.database_url, pool_size=5, max_overflow=5)
        self.sessions = make_session_factory(self.engine)

    def _guarded(
        self, name: str, target: Callable[[threading.Event], None]
    ) -> Callable[[], None]:
        def body() -> None:
            try:
                target(self.stop_event)
            except Exception:
                log.exception("worker %s: %s crashed; stopping", self.app, name)
                self._failed = True
                self.stop_event.set()

        return body

    def start(self) -> None:
        """Start the probe endpoint, the relay and consumer threads and the scheduler."""
        if self.metrics_port is not None:
            self._probes = ProbeServer(
                self.settings.metrics_host, self.metrics_port, self.ready_checks()
            )
            self._probes.start()
        if self.topics or self.produces:
            try:
                ensure_topics(
                    self.settings.kafka_bootstrap_servers,
                    [*self.topics, *self.produces],
                    partitions=self.settings.topic_partitions,
                )
            except KafkaError as exc:
                log.warning(
                    "could not create topics now (%s); they are made on use", repr(exc)
                )
        if self.with_relay:
            self._relay = Relay(
                self.engine,
                self.settings.kafka_bootstrap_servers,
                config=self.relay_config,
            )
            self._spawn("relay", self._relay.run)
        if self.consumers:
            consumer = Consumer(
                group_id=self.group_id,
                bootstrap_servers=self.settings.kafka_bootstrap_servers,
                sessions=self.sessions,
                consumers=self.consumers,
                topics=self.topics,
                max_attempts=self.max_attempts,
                consumer_options=self.consumer_options,
                event_types=self.event_types,
                idle_wait_max=self.settings.consumer_idle_wait_max,
            )
            self._consumer = consumer
            self._spawn("consumer", consumer.run)
        if self.jobs:
            self._scheduler = Scheduler(
                self.jobs,
                settings=self.settings,
                engine=self.engine,
                sessions=self.sessions,
            )
            self._scheduler.start()

    @property
    def probe_port(self) -> int | None:
        """The port of `/health/*` and `/metrics`, once started (None: not served)."""
        return None if self._probes is None else self._probes.port

    def ready_checks(self) -> dict[str, ReadyCheck]:
        """The readiness checks of this worker's parts, in the order they are run."""
        checks: dict[str, ReadyCheck] = {"database": self._database_answers}
        if self.with_relay or self.topics or self.produces:
            checks["broker"] = self._broker_answers
        if self.consumers:
            checks["consumer"] = self._consumer_assigned
        if self.jobs:
            checks["scheduler"] = self._scheduler_running
        return checks

    def _database_answers(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def _broker_answers(self) -> None:
        errors = []
        for server in split_servers(self.settings.kafka_bootstrap_servers):
            host, _, port = server.rpartition(":")
            try:
                socket.create_connection((host, int(port)), timeout=2).close()
            except OSError as exc:
                errors.append(f"{server}: {exc}")
            else:
                return
        raise ConnectionError(f"no broker answers ({'; '.join(errors)})")

    def _consumer_assigned(self) -> None:
        if self._consumer is None or not self._consumer.assigned:
            raise RuntimeError("the consumer has no partitions assigned yet")

    def _scheduler_running(self) -> None:
        if self._scheduler is None or not self._scheduler.running:
            raise RuntimeError("the scheduler is not running")

    def _spawn(self, name: str, target: Callable[[threading.Event], None]) -> None:
        thread = threading.Thread(
            target=self._guarded(name, target), name=f"{self.app}-{name}", daemon=True
        )
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        """Ask every part to stop (safe from a signal handler)."""
        self.stop_event.set()
        if self._relay is not None:
            self._relay.wake()

    def join(self, timeout: float = 10.0) -> None:
        """Wait up to `timeout` seconds in all for the parts, then release the database.

        A part still running then is named in the log and left behind: its threads
        are daemons, and whatever it had not finished is redone after a restart
        (pending outbox rows, uncommitted offsets, expired leases).
        """
        deadline = time.monotonic() + timeout
        threads = list(self._threads)
        if self._scheduler is not None:  # its running jobs finish, within the budget
            scheduler, self._scheduler = self._scheduler, None
            stopping = threading.Thread(
                target=scheduler.shutdown, name=f"{self.app}-scheduler", daemon=True
            )
            stopping.start()
            threads.insert(0, stopping)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        late = [thread.name for thread in threads if thread.is_alive()]
        self.stopped_cleanly = not late
        if late:
            log.warning(
                "worker %s: still running after %.0fs: %s", self.app, timeout, late
            )
        self._consumer = None
        self._relay = None
        if self._probes is not None:
            self._probes.stop()
            self._probes = None
        self.engine.dispose()

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; return the exit status (non-zero if a part crashed)."""
        configure_logging(f"{self.app}-worker", self.settings.log_level)

        def on_signal(signum: int, frame: FrameType | None) -> None:
            self.stop()  # no logging here: the handler may interrupt a log call

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        log.info(
            "worker %s started: topics %s, %d jobs",
            self.app,
            self.topics,
            len(self.jobs),
        )
        # Only the main thread takes the stop signals: its threads (and theirs)
        # start with them blocked. A signal delivered to another thread would not
        # end the main thread's wait below, and SIGTERM right after SIGINT (as
        # `chomik run` stops its children) goes to another thread while the
        # first is still pending in the main one.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            self.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        self.stop_event.wait()  # a signal, or a part that crashed, sets it
        log.info("worker %s stopping", self.app)
        self.join()
        log.info("worker %s stopped", self.app)
        return 1 if self._failed else 0
