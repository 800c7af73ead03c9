"""The Kafka consumer loop: one DB transaction per message, inbox dedupe, retries, DLQ.

An app hands over its `CONSUMERS` table, `{event class (or type string): handler}`;
its classes are also the table that messages are decoded with (a handler keyed by a
type string receives the `Envelope`).
For each message the loop opens one transaction holding the inbox row (unique per
consumer group and event id), the handler's effect and the outbox rows the handler
emits; offsets are committed only after that transaction committed. A duplicate is
skipped (so a replayed dead letter that was applied meanwhile is a no-op).

Only a fault of the message goes to `<topic>.dlq`. A failure is sorted by what it
is (`is_outage`, which walks the whole cause chain):

| failure                                   | examples                          | handling |
|-------------------------------------------|-----------------------------------|----------|
| database outage                           | connection lost or refused, pool  | outage   |
|                                           | exhausted, SQLSTATE class 08, 53, |          |
|                                           | 58, 57P01-57P03                   |          |
| deadlock, serialization failure           | SQLSTATE 40P01, 40001             | outage   |
| remote outage: a `chomik.transient`       | the clients' `TransportError`,    | outage   |
| `TransientError`                          | `ServerError` (5xx), 429          |          |
| any other SQLSTATE                        | 57014, 55P03 (timeouts), 54xxx    | bounded  |
| anything else the handler raises          | a bug, a refused remote request   | bounded  |
| unparseable envelope or event             | `MalformedMessageError`           | DLQ now  |

outage: the message is not the problem, so it is never dead-lettered. The records
not yet applied are read again (seek back) after a capped exponential backoff
(`outage_backoff` doubling up to `outage_backoff_max`), for as long as the outage
lasts: the partitions wait, `consumer_lag` keeps growing and `consumer_outage_waits`
counts the pauses, so an alert can fire. A broker that cannot be reached is an outage
too, handled otherwise: the Kafka consumer is closed (it leaves its group) and made
again after the same backoff, for as long as the outage lasts (`Consumer.run`). While it waits the consumer keeps polling
with its partitions paused, so it stays in its group however long the outage is
(kafka-python leaves the group when `poll` is not called within
`max_poll_interval_ms`).

bounded: retried in place with backoff up to `max_attempts` times, then published to
`<topic>.dlq` with the original key, value and headers plus `dlq.*` headers (error,
error type, attempts, source topic, partition, offset, group), and the partition
moves on. Timeouts are bounded because the message's own work may cause them again
and again. `chomik dlq` lists, shows and replays dead letters (`chomik.messaging.dlq`).

Idle, the loop lets the broker wait: once `idle_after` seconds have passed without a
record (with partitions assigned), each fetch asks the broker to hold it up to
`idle_wait` seconds at first, doubling up to `idle_wait_max`, instead of the busy
`fetch_max_wait_ms` (50 ms); the first record shortens it again (`idle_wait_max` 0:
it never lengthens). The broker answers such a fetch as soon as a record is there
(Apache Kafka at once; the embedded Tansu at its next look, halfway through the
wait, then at three quarters...), so an idle consumer costs one fetch per wait and
a record after a quiet spell is not held back by a pause on the client's side.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker

from chomik.db import compiled_once
from chomik.logs import request_id_var
from chomik.messaging.kafka import (
    Envelope,
    Event,
    MalformedMessageError,
    decode,
    dlq,
    event_table,
    fetch_wait,
    make_consumer,
    make_producer,
    set_fetch_wait,
)
from chomik.messaging.outbox import backoff_delay
from chomik.metrics import (
    CONSUMED,
    DEAD_LETTERED,
    DUPLICATES,
    IGNORED,
    LAG,
    OUTAGE_WAITS,
    RETRIES,
)
from chomik.transient import is_outage

log = logging.getLogger(__name__)

Handler = Callable[[Session, Any], None]
HandlerKey = type[Event] | str

POLL_MS = 200  # one poll's wait for records, busy; idle, on top of the fetch's wait
CLOSE_TIMEOUT_MS = 1000  # leaving the group on stop, at most


_inbox = sa.table(
    "inbox_events",
    sa.column("consumer_group", sa.String),
    sa.column("event_id", sa.Uuid(as_uuid=True)),
    sa.column("topic", sa.String),
    sa.column("type", sa.String),
)


class _OutageError(RuntimeError):
    """A database, remote service or the broker is unavailable: retry later, never
    dead-letter."""


@dataclass(frozen=True)
class InboxEntry:
    """The inbox row that marks one event applied by one consumer group."""

    consumer_group: str
    event_id: uuid.UUID
    topic: str
    type: str


# One inbox row per event and consumer group; no row back: already applied.
_RECORD_INBOX = compiled_once(
    insert(_inbox)
    .values(
        consumer_group=sa.bindparam("consumer_group"),
        event_id=sa.bindparam("event_id", type_=sa.Uuid()),
        topic=sa.bindparam("topic"),
        type=sa.bindparam("type"),
    )
    .on_conflict_do_nothing()
    .returning(_inbox.c.event_id)
)


def record_inbox(session: Session, entry: InboxEntry) -> bool:
    """Write the inbox row in the caller's transaction; False if already applied.

    A plain INSERT (no NOTIFY, no temporary table), so it may run inside a
    prepared two-phase branch, committing with the effect or not at all.
    """
    inserted = session.execute(_RECORD_INBOX, asdict(entry)).first()
    return inserted is not None


H = TypeVar("H", bound=Callable[..., Any])


def owns_transaction(handler: H) -> H:
    """Mark a handler that opens its own transaction and calls `record_inbox` in it."""
    handler.chomik_owns_transaction = True  # type: ignore[attr-defined]
    return handler


def handler_table(consumers: Mapping[HandlerKey, Handler]) -> dict[str, Handler]:
    """`{event type string: handler}` from a `CONSUMERS` table."""
    return {
        (key if isinstance(key, str) else key.type): handler
        for key, handler in consumers.items()
    }


def event_types_of(consumers: Mapping[HandlerKey, Handler]) -> dict[str, type[Event]]:
    """The event classes a `CONSUMERS` table handles: what its messages decode to."""
    return event_table(*(key for key in consumers if not isinstance(key, str)))


def topics_of(
    consumers: Mapping[HandlerKey, Handler], extra: Iterable[str] = ()
) -> list[str]:
    """The topics to subscribe to: those of the event classes, plus `extra`."""
    topics = {key.topic for key in consumers if not isinstance(key, str)}
    return sorted(topics | set(extra))


class Consumer:
    """Consumes the topics of a `CONSUMERS` table as one consumer group member."""

    def __init__(
        self,
        *,
        group_id: str,
        bootstrap_servers: str,
        sessions: sessionmaker[Session],
        consumers: Mapping[HandlerKey, Handler],
        topics: Iterable[str] = (),
        max_attempts: int = 4,
        retry_backoff: float = 0.2,
        retry_backoff_max: float = 2.0,
        outage_backoff: float = 0.2,
        outage_backoff_max: float = 5.0,
        consumer_options: Mapping[str, Any] | None = None,
        producer_factory: Callable[[], KafkaProducer] | None = None,
        event_types: Mapping[str, type[Event]] | None = None,
        idle_after: float = 10.0,
        idle_wait: float = 0.5,
        idle_wait_max: float = 2.0,
    ) -> None:
        self.group_id = group_id
        self.bootstrap_servers = bootstrap_servers
        self.sessions = sessions
        self.handlers = handler_table(consumers)
        # What messages decode to: the table's event classes unless given.
        self.event_types = dict(
            event_types_of(consumers) if event_types is None else event_types
        )
        self.topics = topics_of(consumers, topics)
        self.max_attempts = max_attempts
        self.retry_backoff = retry_backoff
        self.retry_backoff_max = retry_backoff_max
        self.outage_backoff = outage_backoff
        self.outage_backoff_max = outage_backoff_max
        self.idle_after = idle_after
        self.idle_wait = idle_wait
        self.idle_wait_max = idle_wait_max
        self.consumer_options = dict(consumer_options or {})
        self._producer_factory = producer_factory or (
            lambda: make_producer(bootstrap_servers)
        )
        self._producer: KafkaProducer | None = None
        self._consumer: KafkaConsumer | None = None
        self._positions: dict[TopicPartition, int] = {}
        self._joined = False  # the current Kafka consumer was given partitions

    @property
    def assigned(self) -> frozenset[TopicPartition]:
        """The partitions the group gave this member (none before it joined)."""
        consumer = self._consumer
        return frozenset() if consumer is None else frozenset(consumer.assignment())

    # --- one message ---------------------------------------------------------------

    def apply(self, topic: str, envelope: Envelope, event: Any) -> bool:
        """Run the handler in one transaction with the inbox row; False if duplicate.

        A handler marked `@owns_transaction` gets the inbox entry instead of a
        session and writes it with `record_inbox` in its own transaction (such as
        one branch of a two-phase commit), returning False for a duplicate.
        """
        handler = self.handlers[envelope.type]
        entry = InboxEntry(self.group_id, envelope.id, topic, envelope.type)
        if getattr(handler, "chomik_owns_transaction", False):
            owner = cast(Callable[[InboxEntry, Any], bool], handler)
            return bool(owner(entry, event))
        with self.sessions() as session, session.begin():
            if not record_inbox(session, entry):
                return False
            handler(session, event)
        return True

    def process(self, record: ConsumerRecord) -> None:
        """Apply one record, retrying, dead-lettering when it cannot be applied.

        Raises `_OutageError` when the database, a remote service or the broker is
        unavailable: the record must then be read again later.
        """
        labels = (self.group_id, record.topic)
        try:
            envelope = Envelope.from_json(record.value)
            if envelope.type not in self.handlers:
                IGNORED.labels(*labels).inc()
                return
            event = decode(envelope, self.event_types)
        except MalformedMessageError as exc:
            log.warning("unparseable message at %s:%d", record.topic, record.offset)
            self.dead_letter(record, exc, attempts=0)
            return
        token = request_id_var.set(envelope.request_id)
        try:
            self._apply_with_retries(record, envelope, event)
        finally:
            request_id_var.reset(token)

    def _apply_with_retries(
        self, record: ConsumerRecord, envelope: Envelope, event: Any
    ) -> None:
        labels = (self.group_id, record.topic)
        attempt = 0
        while True:
            attempt += 1
            try:
                applied = self.apply(record.topic, envelope, event)
            except Exception as exc:  # noqa: BLE001 - sorted below: ours or the message's
                if is_outage(exc):
                    raise _OutageError(f"{type(exc).__name__}: {exc}") from exc
                if attempt >= self.max_attempts:
                    log.warning(
                        "event %s (%s) failed %d times, dead-lettering: %s",
                        envelope.id, envelope.type, attempt, repr(exc),
                    )  # fmt: skip
                    self.dead_letter(record, exc, attempts=attempt)
                    return
                RETRIES.labels(*labels).inc()
                delay = backoff_delay(
                    attempt, self.retry_backoff, self.retry_backoff_max
                )
                log.info(
                    "event %s failed (attempt %d): %s", envelope.id, attempt, repr(exc)
                )
                time.sleep(delay)
                continue
            if applied:
                CONSUMED.labels(*labels).inc()
            else:
                DUPLICATES.labels(*labels).inc()
            return

    def dead_letter(
        self, record: ConsumerRecord, error: BaseException, *, attempts: int
    ) -> None:
        """Publish the original message to `<topic>.dlq` with the error in headers."""
        detail = "".join(traceback.format_exception_only(type(error), error)).strip()
        headers = list(record.headers or []) + [
            ("dlq.error", detail[:2000].encode()),
            ("dlq.error_type", type(error).__name__.encode()),
            ("dlq.attempts", str(attempts).encode()),
            ("dlq.topic", record.topic.encode()),
            ("dlq.partition", str(record.partition).encode()),
            ("dlq.offset", str(record.offset).encode()),
            ("dlq.group", self.group_id.encode()),
        ]
        try:
            if self._producer is None:
                self._producer = self._producer_factory()
            future = self._producer.send(
                dlq(record.topic),
                key=record.key,
                value=record.value or b"",
                headers=headers,
            )
            future.get(timeout=15)
        except KafkaError as exc:
            if self._producer is not None:
                self._producer.close(timeout=1)
                self._producer = None
            raise _OutageError(f"dead-letter publish failed: {exc!r}") from exc
        DEAD_LETTERED.labels(self.group_id, record.topic).inc()

    # --- the loop --------------------------------------------------------------------

    def _commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        if not offsets or self._consumer is None:
            return
        try:
            self._consumer.commit(dict(offsets))
        except (CommitFailedError, KafkaError) as exc:
            # Rebalanced meanwhile: the new owner re-reads, the inbox skips duplicates.
            log.warning("offset commit failed: %s", repr(exc))
        offsets.clear()

    def _update_lag(self, consumer: KafkaConsumer) -> None:
        for tp in consumer.assignment():
            end = consumer.highwater(tp)
            current = self._positions.get(tp)
            if end is not None and current is not None:
                lag = max(0, end - current)
                LAG.labels(self.group_id, tp.topic, str(tp.partition)).set(lag)

    def _process_batch(
        self,
        batches: Mapping[TopicPartition, list[ConsumerRecord]],
        stop: threading.Event,
        offsets: dict[TopicPartition, OffsetAndMetadata],
    ) -> None:
        """Apply polled records in order; record each applied offset in `offsets`."""
        for tp, records in batches.items():
            for record in records:
                if stop.is_set():
                    return
                self.process(record)
                offsets[tp] = OffsetAndMetadata(record.offset + 1, "", -1)
                self._positions[tp] = record.offset + 1

    def _rewind(
        self,
        consumer: KafkaConsumer,
        batches: Mapping[TopicPartition, list[ConsumerRecord]],
        offsets: dict[TopicPartition, OffsetAndMetadata],
    ) -> None:
        """Seek back to the first record of each partition not applied yet."""
        for tp, records in batches.items():
            done = offsets.get(tp)
            position = done.offset if done else records[0].offset
            consumer.seek(tp, position)
            self._positions[tp] = position

    def _wait_paused(
        self, consumer: KafkaConsumer, delay: float, stop: threading.Event
    ) -> None:
        """Wait `delay` seconds with every partition paused, still polling.

        Polling keeps the group membership (kafka-python leaves the group when
        `poll` is not called within `max_poll_interval_ms`) and lets a rebalance
        happen; a partition assigned meanwhile is paused too, its records unread.
        """
        deadline = time.monotonic() + delay
        consumer.pause(*consumer.assignment())
        try:
            while not stop.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                stray = consumer.poll(
                    timeout_ms=max(1, int(min(remaining, 0.5) * 1000))
                )
                for tp, records in stray.items():
                    consumer.seek(tp, records[0].offset)
                    consumer.pause(tp)
        finally:
            consumer.resume(*consumer.paused())

    def run(self, stop: threading.Event) -> None:
        """Consume until `stop` is set; then finish the current message, commit, leave.

        A broker that cannot be reached (refused, gone, timing out: kafka-python's
        retriable errors) is waited out, however long: the Kafka consumer is
        closed, and made again after a backoff that grows until one has joined its
        group again. Offsets follow the database, so what was applied and not yet
        committed is read again and skipped by the inbox. Any other Kafka error
        (a corrupt record, a refused authorization) ends the loop, as a bug does.
        """
        failures = 0
        while not stop.is_set():
            try:
                self._consume(stop)
                return
            except KafkaError as exc:
                if not exc.retriable:
                    raise
                failures = 1 if self._joined else failures + 1
                OUTAGE_WAITS.labels(self.group_id).inc()
                delay = backoff_delay(
                    failures, self.outage_backoff, self.outage_backoff_max
                )
                log.warning("consumer lost the broker (%r); again in %.2fs", exc, delay)
                stop.wait(delay)

    def _consume(self, stop: threading.Event) -> None:
        """The loop of one Kafka consumer, until `stop` is set or the broker fails."""
        self._positions = {}
        self._joined = False
        consumer = make_consumer(
            self.bootstrap_servers, self.group_id, **self.consumer_options
        )
        self._consumer = consumer
        try:
            consumer.subscribe(self.topics)
            self._loop(consumer, stop)
        finally:
            self._consumer = None
            # Leaving the group is a courtesy (the broker drops a silent member
            # after its session timeout): bounded so that a stop stays short.
            consumer.close(autocommit=False, timeout_ms=CLOSE_TIMEOUT_MS)
            if self._producer is not None:
                self._producer.close(timeout=2)
                self._producer = None

    def _loop(self, consumer: KafkaConsumer, stop: threading.Event) -> None:
        """Poll, apply, commit; pause the partitions through an outage."""
        failures = 0
        last_record = time.monotonic()
        busy_wait = fetch_wait(consumer)
        # A fetch the broker holds past the request timeout would be given up.
        longest = min(self.idle_wait_max, consumer.config["request_timeout_ms"] / 2000)
        idle_wait: float | None = None  # the broker's wait while idle
        while not stop.is_set():
            if not consumer.assignment():  # joining: never idle
                last_record = time.monotonic()
            if longest <= 0 or time.monotonic() - last_record <= self.idle_after:
                idle_wait = None
            elif idle_wait is None:
                idle_wait = min(self.idle_wait, longest)
            else:
                idle_wait = min(longest, idle_wait * 2)
            set_fetch_wait(consumer, busy_wait if idle_wait is None else idle_wait)
            # Idle, one poll lasts the broker's whole wait.
            extra = 0 if idle_wait is None else int(idle_wait * 1000)
            batches = consumer.poll(timeout_ms=extra + POLL_MS)
            self._joined = self._joined or bool(consumer.assignment())
            offsets: dict[TopicPartition, OffsetAndMetadata] = {}
            try:
                self._process_batch(batches, stop, offsets)
            except _OutageError as exc:
                # Read the unapplied records again after a pause, however long
                # the outage lasts.
                self._rewind(consumer, batches, offsets)
                self._commit(offsets)
                self._update_lag(consumer)
                failures += 1
                OUTAGE_WAITS.labels(self.group_id).inc()
                delay = backoff_delay(
                    failures, self.outage_backoff, self.outage_backoff_max
                )
                log.warning("consumer paused %.2fs: %s", delay, str(exc))
                self._wait_paused(consumer, delay, stop)
                continue
            if batches:
                failures = 0
                last_record = time.monotonic()
            self._commit(offsets)
            self._update_lag(consumer)
