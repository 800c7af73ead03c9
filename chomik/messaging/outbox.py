"""The transactional outbox: events written with the state change, published by a relay.

`install_messaging(metadata)` adds the kit's messaging tables (`outbox_events`,
`inbox_events`) to an app's metadata; `emit(session, event)` writes one outbox row in
the caller's transaction; the `Relay` publishes committed rows in per-key order.

A row the broker refuses for good (too large, an invalid topic: the errors in
`REFUSALS`, whether `send()` raises them or the send's future fails with them later)
counts a refusal; after `RelayConfig.max_refusals` of them it is parked: kept with
its error (`last_error`, `parked_at`), left out of the pending scan and of the
pending gauges, counted by `outbox_parked` (gauge) and `outbox_parked_events_total`.
Until then its key's later events wait behind it (a refusal that arrives after
`send()` returned may find the key's later rows of that batch already on the broker:
they are sent again, and consumers skip the copies by event id); once it is parked
they flow, so
one refused event cannot stop an entity for good (an operator inspects the parked
row and re-emits or drops it). A broker that is down or slow (timeouts, leader
moves) never counts toward parking: the relay backs off and every row waits.

An idle relay costs next to nothing: `emit` also sends `NOTIFY chomik_outbox` in
the caller's transaction (delivered at commit), which wakes the relays of that
database at once; between wake-ups the relay polls at an interval that doubles
while it finds nothing, up to `RelayConfig.idle_interval_max`, and is short again
after a hit. A two-phase branch cannot notify (PostgreSQL refuses to PREPARE a
transaction that ran NOTIFY), so what it emits waits at most that longest interval.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import random
import select
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from kafka import KafkaProducer
from kafka.errors import (
    CorruptRecordError,
    InvalidRecordError,
    InvalidTimestampError,
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    UnsupportedForMessageFormatError,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from chomik.db import Listener, UTCDateTime, in_two_phase
from chomik.logs import current_request_id
from chomik.messaging.kafka import Envelope, Event, envelope_of, make_producer
from chomik.metrics import (
    OUTBOX_OLDEST_AGE,
    OUTBOX_PARKED,
    OUTBOX_PARKED_EVENTS,
    OUTBOX_PENDING,
    OUTBOX_PUBLISH_ERRORS,
    OUTBOX_PUBLISHED,
    OUTBOX_REFUSED,
)

log = logging.getLogger(__name__)


# What says "this record can never be accepted as it is": counted against the row.
# Anything else (no broker, timeouts, leader moves) is the broker's state, not the
# row's. ValueError and TypeError come from `send()` checking the record itself.
REFUSALS: tuple[type[BaseException], ...] = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    InvalidTopicError,
    InvalidRecordError,
    CorruptRecordError,
    InvalidTimestampError,
    UnsupportedForMessageFormatError,
    ValueError,
    TypeError,
)

OUTBOX_TABLE = "outbox_events"
INBOX_TABLE = "inbox_events"


def install_messaging(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    """Add `outbox_events` and `inbox_events` to `metadata` once; return both."""
    if OUTBOX_TABLE in metadata.tables:
        return metadata.tables[OUTBOX_TABLE], metadata.tables[INBOX_TABLE]
    outbox = sa.Table(
        OUTBOX_TABLE,
        metadata,
        sa.Column("seq", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("id", sa.Uuid(as_uuid=True), nullable=False, unique=True),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("type", sa.String(200), nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column(
            "created_at", UTCDateTime, nullable=False, server_default=sa.func.now()
        ),
        sa.Column("sent_at", UTCDateTime, nullable=True),
        sa.Column("refusals", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("parked_at", UTCDateTime, nullable=True),
        sa.Index(
            "ix_outbox_events_pending",
            "seq",
            postgresql_where=sa.text("sent_at IS NULL AND parked_at IS NULL"),
        ),
        sa.Index(
            "ix_outbox_events_parked",
            "seq",
            postgresql_where=sa.text("parked_at IS NOT NULL"),
        ),
        sa.Index("ix_outbox_events_sent_at", "sent_at"),
    )
    inbox = sa.Table(
        INBOX_TABLE,
        metadata,
        sa.Column("consumer_group", sa.String(200), primary_key=True),
        sa.Column("event_id", sa.Uuid(as_uuid=True), primary_key=True),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("type", sa.String(200), nullable=False),
        sa.Column(
            "processed_at", UTCDateTime, nullable=False, server_default=sa.func.now()
        ),
        sa.Index("ix_inbox_events_processed_at", "processed_at"),
    )
    return outbox, inbox


# Lightweight handles for DML, independent of any app's metadata.
_outbox = sa.table(
    OUTBOX_TABLE,
    sa.column("seq", sa.BigInteger),
    sa.column("id", sa.Uuid(as_uuid=True)),
    sa.column("topic", sa.String),
    sa.column("key", sa.String),
    sa.column("type", sa.String),
    sa.column("payload", sa.LargeBinary),
    sa.column("created_at", UTCDateTime),
    sa.column("sent_at", UTCDateTime),
)


# The channel `emit` notifies and relays listen on (one per database).
NOTIFY_CHANNEL = "chomik_outbox"


def emit(session: Session, event: Event, *, topic: str | None = None) -> Envelope:
    """Write `event` to the outbox in the caller's transaction; return its envelope.

    Nothing is published until the transaction commits and the relay picks the row
    up; a rolled-back transaction publishes nothing. The same statement notifies
    `NOTIFY_CHANNEL`, so the relay wakes when the transaction commits; in a
    two-phase branch, which may not notify, it is a plain INSERT (no temporary
    table either), and the relay finds the row when it next polls.
    """
    envelope = envelope_of(event, request_id=current_request_id())
    emit_envelope(session, envelope, topic=topic or event.topic)
    return envelope


def emit_envelope(session: Session, envelope: Envelope, *, topic: str) -> None:
    """Write a ready envelope to the outbox (for forwarding messages as they are)."""
    values = {
        "id": envelope.id,
        "topic": topic,
        "key": envelope.key,
        "type": envelope.type,
        "payload": envelope.to_json(),
    }
    if in_two_phase(session):
        session.execute(_INSERT, values)
    else:  # one round trip: the INSERT, and the notification delivered at commit
        session.execute(_INSERT_NOTIFYING, values)


def _emit_statements() -> tuple[sa.Executable, sa.Executable]:
    """The outbox INSERT, and the same INSERT notifying the relays: built once
    (every event goes through them), their values bound per call."""
    insert = sa.insert(_outbox).values(
        {name: sa.bindparam(name) for name in ("id", "topic", "key", "type", "payload")}
    )
    emitted = insert.returning(_outbox.c.seq).cte("emitted")
    notifying = sa.select(sa.func.pg_notify(NOTIFY_CHANNEL, "")).select_from(emitted)
    return insert, notifying


_INSERT, _INSERT_NOTIFYING = _emit_statements()


def wake_relays(engine: Engine) -> None:
    """Wake the relays of `engine`'s database now.

    For a two-phase transaction that emitted events, once it has committed: its
    branch could not notify (see `emit`), so its rows would wait for the next poll.
    """
    with engine.connect() as conn, conn.begin():
        conn.execute(sa.select(sa.func.pg_notify(NOTIFY_CHANNEL, "")))


def republish(engine: Engine, seconds: float) -> int:
    """Make every event sent in the last `seconds` pending again; how many (0: no
    outbox in this database).

    For a broker that lost what it had (the embedded one when it dies, a Kafka
    cluster restored from an old state): the relays send those events again, in
    their order, and each consumer group skips the ones it applied (its inbox).
    Only events still kept (`OUTBOX_RETENTION`) can be sent again. It waits for
    every relay batch of the database to end (their key shards' locks), so none
    runs meanwhile; an event sent to the new broker before this runs goes before
    the older ones, hence the workers are best stopped first.
    """
    with engine.begin() as conn:
        if conn.scalar(sa.select(sa.func.to_regclass("outbox_events"))) is None:
            return 0
        conn.execute(
            sa.text(
                "SELECT pg_advisory_xact_lock(:ns, shard)"
                " FROM generate_series(0, :shards - 1) AS shard"
            ),
            {"ns": _SHARD_LOCK_NAMESPACE, "shards": RelayConfig().shards},
        )
        count = conn.execute(
            sa.text(
                "UPDATE outbox_events SET sent_at = NULL"
                " WHERE sent_at >= now() - make_interval(secs => :seconds)"
                " AND parked_at IS NULL"
            ),
            {"seconds": seconds},
        ).rowcount
        conn.execute(sa.select(sa.func.pg_notify(NOTIFY_CHANNEL, "")))
    return int(count)


def republish_all(urls: Mapping[str, str], seconds: float) -> dict[str, int]:
    """`republish` on each database (by name: URL); how many events each."""
    counts = {}
    for name, url in urls.items():
        engine = sa.create_engine(url, poolclass=NullPool)
        try:
            counts[name] = republish(engine, seconds)
        finally:
            engine.dispose()
    return counts


def prune_messages(
    session: Session, *, outbox_retention: dt.timedelta, inbox_retention: dt.timedelta
) -> tuple[int, int]:
    """Delete sent outbox rows and inbox rows older than their retention.

    Pending outbox rows are never touched. An event delivered again after its inbox
    row is gone (a DLQ replay, a rewound group) is applied again: the inbox
    retention must outlast any redelivery.
    """
    outbox = session.execute(
        sa.text("DELETE FROM outbox_events WHERE sent_at < now() - :keep"),
        {"keep": outbox_retention},
    )
    inbox = session.execute(
        sa.text("DELETE FROM inbox_events WHERE processed_at < now() - :keep"),
        {"keep": inbox_retention},
    )
    return outbox.rowcount, inbox.rowcount  # type: ignore[attr-defined]


# Advisory-lock namespace of the relay's key shards (any constant int4).
_SHARD_LOCK_NAMESPACE = 0x0C40


# The relay's statements, parsed once: a batch runs each of them.
_LOCK_SHARDS = sa.text(
    "SELECT shard FROM ("
    "  SELECT shard FROM ("
    "    SELECT DISTINCT abs(mod(hashtext(key), :shards)) AS shard FROM ("
    "      SELECT key FROM outbox_events"
    "      WHERE sent_at IS NULL AND parked_at IS NULL"
    "      ORDER BY seq LIMIT :scan) AS oldest) AS candidates"
    "  ORDER BY random()) AS shuffled"
    " WHERE pg_try_advisory_xact_lock(:ns, shard)"
    " LIMIT :take"
)
_CLAIM_ROWS = sa.text(
    "SELECT seq, topic, key, payload, type FROM outbox_events"
    " WHERE sent_at IS NULL AND parked_at IS NULL"
    " AND abs(mod(hashtext(key), :shards)) = ANY(:held)"
    " ORDER BY seq LIMIT :limit FOR UPDATE SKIP LOCKED"
)
_MARK_SENT = sa.text("UPDATE outbox_events SET sent_at = now() WHERE seq = ANY(:seqs)")


@dataclass(frozen=True)
class RelayConfig:
    """Tuning of one relay; the defaults suit production."""

    batch_size: int = 500
    shards: int = 16
    shards_per_batch: int = 6
    # Waits between polls that find less than a batch: `idle_interval` after a
    # hit, doubling while nothing is found, up to `idle_interval_max` (how long a
    # row emitted without a notification, in a two-phase branch, may wait).
    idle_interval: float = 0.02
    idle_interval_max: float = 5.0
    listen: bool = True  # wake on `NOTIFY_CHANNEL` (see `emit`)
    backoff_base: float = 0.2
    backoff_max: float = 5.0
    flush_timeout: float = 15.0
    housekeeping_interval: float = 15.0  # the gauges' refresh: Prometheus's scrape
    max_refusals: int = 5


class PublishError(RuntimeError):
    """Some rows of a batch were not acknowledged by the broker."""


def backoff_delay(failures: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter, bounded by `cap`."""
    return float(random.uniform(0.5, 1.0) * min(cap, base * 2 ** max(0, failures - 1)))


class Relay:
    """Publishes committed outbox rows; any number of replicas may run at once.

    One batch is one transaction: claim pending rows in `seq` order with
    `FOR UPDATE SKIP LOCKED`, publish them (idempotent producer, `acks=all`, keyed by
    the entity id), mark the acknowledged ones sent, count refusals (parking a row
    refused `max_refusals` times), commit. Keys hash into shards; a
    batch first takes transaction-level advisory locks on a few free shards, then
    claims only their rows, so two replicas never publish one key at the same time
    and each key's events leave in `seq` order (events of one entity are emitted
    under that entity's row lock, so `seq` order is their commit order). A crash
    mid-batch rolls the claim back: those rows are published again (at least once;
    consumers deduplicate by event id).
    """

    def __init__(
        self,
        engine: Engine,
        bootstrap_servers: str,
        *,
        config: RelayConfig | None = None,
        producer_factory: Callable[[], KafkaProducer] | None = None,
    ) -> None:
        self.engine = engine
        self.config = config or RelayConfig()
        self._producer_factory = producer_factory or (
            lambda: make_producer(bootstrap_servers)
        )
        self._producer: KafkaProducer | None = None
        self._last_housekeeping = 0.0
        self._listener = (
            Listener(
                engine,
                {NOTIFY_CHANNEL},
                lambda _channel: self.wake(),
                retry=self.config.backoff_max,
            )
            if self.config.listen
            else None
        )
        self._wake_pipe: tuple[int, int] | None = None  # while running

    def wake(self) -> None:
        """Cut the current wait short (safe from a signal handler)."""
        pipe = self._wake_pipe
        # A full pipe has a wake-up pending already; a closed one, a finished relay.
        if pipe is not None:
            with contextlib.suppress(OSError):
                os.write(pipe[1], b"!")

    @property
    def producer(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = self._producer_factory()
        return self._producer

    def close(self) -> None:
        """Release the producer (its unsent messages are still pending rows)."""
        if self._producer is not None:
            self._producer.close(timeout=2)
            self._producer = None

    def _lock_shards(self, conn: sa.Connection) -> list[int]:
        """Take free key shards among those of the oldest pending rows (random order).

        The locks are taken before the rows are read, in their own statement: the
        claim that follows sees every row the previous holder of a shard committed.
        """
        return list(
            conn.scalars(
                _LOCK_SHARDS,
                {
                    "ns": _SHARD_LOCK_NAMESPACE,
                    "shards": self.config.shards,
                    "scan": self.config.batch_size * 2,
                    "take": self.config.shards_per_batch,
                },
            )
        )

    def _claim(self, conn: sa.Connection) -> list[Any]:
        shards = self._lock_shards(conn)
        if not shards:
            return []
        return list(
            conn.execute(
                _CLAIM_ROWS,
                {
                    "shards": self.config.shards,
                    "held": shards,
                    "limit": self.config.batch_size,
                },
            )
        )

    def publish_batch(self) -> int:
        """Publish one batch; return how many rows were marked sent.

        Raises `PublishError` (after committing what was acknowledged) when the
        broker is away and nothing could be published; the rest stays pending. When
        only some keys failed, the others are marked sent and the failed keys wait,
        their order kept. A refused row counts a refusal and is parked at the limit.
        """
        with self.engine.connect() as conn, conn.begin():
            rows = self._claim(conn)
            if not rows:
                return 0
            try:
                futures = self._send_all(rows)
            except KafkaError as exc:
                self.close()
                raise PublishError(f"publishing failed: {exc!r}") from exc
            outcome = _outcome(rows, futures)
            if outcome.sent:
                conn.execute(
                    _MARK_SENT,
                    {"seqs": outcome.sent},
                )
            self._count_refusals(conn, outcome.refused)
        OUTBOX_PUBLISHED.inc(len(outcome.sent))
        if outcome.transient is not None:
            message = (
                f"{len(rows) - len(outcome.sent)} of {len(rows)} unacknowledged: "
                f"{outcome.transient!r}"
            )
            if not outcome.sent:  # nothing moved: the broker is away, back off
                self.close()
                raise PublishError(message)
            OUTBOX_PUBLISH_ERRORS.inc()
            log.warning("relay: %s", message)
        return len(outcome.sent)

    def _count_refusals(
        self, conn: sa.Connection, refused: list[tuple[Any, BaseException]]
    ) -> None:
        """Count one refusal per refused row; park the rows that reached the limit."""
        for row, error in refused:
            text = f"{type(error).__name__}: {error}"[:2000]
            refusals, parked = conn.execute(
                sa.text(
                    "UPDATE outbox_events SET refusals = refusals + 1,"
                    " last_error = :error,"
                    " parked_at = CASE WHEN refusals + 1 >= :limit THEN now() END"
                    " WHERE seq = :seq RETURNING refusals, parked_at IS NOT NULL"
                ),
                {"seq": row.seq, "error": text, "limit": self.config.max_refusals},
            ).one()
            OUTBOX_REFUSED.inc()
            if parked:
                OUTBOX_PARKED_EVENTS.inc()
                log.error(
                    "outbox row %d (%s, key %s) parked after %d refusals: %s",
                    row.seq, row.type, row.key, refusals, text,
                )  # fmt: skip
            else:
                log.warning("outbox row %d refused (%d): %s", row.seq, refusals, text)

    def _send_all(self, rows: list[Any]) -> list[Any]:
        """Hand every row to the producer and wait; a refused row fails alone.

        A refusal at hand-over (too large, a bad topic name) is the row's own fault,
        so it must not fail other keys. Behind a refused event, its key's later
        events are not sent at all, so they can never overtake it. Any other error
        at hand-over (no broker within `max_block_ms`) stops the batch: the broker
        is away, so the rows not handed over yet stay pending without a try.
        """
        producer = self.producer
        futures: list[Any] = [None] * len(rows)
        refused_keys: set[str] = set()
        for index, row in enumerate(rows):
            if row.key in refused_keys:
                continue
            try:
                futures[index] = producer.send(
                    row.topic, key=row.key.encode(), value=bytes(row.payload),
                    headers=[("event_type", row.type.encode())],
                )  # fmt: skip
            except (KafkaError, ValueError, TypeError) as exc:
                futures[index] = exc
                if not isinstance(exc, REFUSALS):
                    break
            if not _delivered_or_pending(futures[index]):
                refused_keys.add(row.key)
        producer.flush(timeout=self.config.flush_timeout)
        return futures

    def refresh_metrics(self) -> None:
        """Set the pending, oldest-age (parked rows left out) and parked gauges."""
        with self.engine.connect() as conn:
            count, age, parked = conn.execute(
                sa.text(
                    "SELECT"
                    " (SELECT count(*) FROM outbox_events"
                    "  WHERE sent_at IS NULL AND parked_at IS NULL),"
                    " (SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0)"
                    "  FROM outbox_events WHERE sent_at IS NULL AND parked_at IS NULL),"
                    " (SELECT count(*) FROM outbox_events WHERE parked_at IS NOT NULL)"
                )
            ).one()
        OUTBOX_PENDING.set(count)
        OUTBOX_OLDEST_AGE.set(float(age))
        OUTBOX_PARKED.set(parked)

    def housekeeping(self, *, force: bool = False) -> None:
        """Refresh the gauges now and then (pruning is the `prune_messages` job's)."""
        now = time.monotonic()
        if force or now - self._last_housekeeping >= self.config.housekeeping_interval:
            self._last_housekeeping = now
            self.refresh_metrics()

    def run(self, stop: threading.Event) -> None:
        """Publish until `stop` is set, backing off (bounded, jittered) on errors.

        Idle, it waits for a notification or its polling interval, whichever
        comes first; the interval doubles while polls find nothing.
        """
        failures = 0
        interval = self.config.idle_interval
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_write, False)
        self._wake_pipe = (wake_read, wake_write)
        if self._listener is not None:
            self._listener.start()
        try:
            while not stop.is_set():
                try:
                    published = self.publish_batch()
                    failures = 0
                except (PublishError, KafkaError, sa.exc.SQLAlchemyError) as exc:
                    failures += 1
                    OUTBOX_PUBLISH_ERRORS.inc()
                    delay = backoff_delay(
                        failures, self.config.backoff_base, self.config.backoff_max
                    )
                    log.warning("outbox relay: %s; retrying in %.2fs", str(exc), delay)
                    self._safe_housekeeping()
                    stop.wait(delay)
                    continue
                self._safe_housekeeping()
                if published >= self.config.batch_size:
                    continue
                if published:
                    interval = self.config.idle_interval
                self._wait(interval, stop, wake_read)
                if not published:
                    interval = min(self.config.idle_interval_max, interval * 2)
        finally:
            if self._listener is not None:
                self._listener.stop()
            self._wake_pipe = None
            os.close(wake_read)
            os.close(wake_write)
            self.close()

    # --- waiting for work --------------------------------------------------------

    def _wait(self, timeout: float, stop: threading.Event, wake_read: int) -> None:
        """Wait up to `timeout` for a notification or `wake()` (a stop wakes it too)."""
        if stop.is_set():
            return
        readable, _, _ = select.select([wake_read], [], [], timeout)
        if readable:
            os.read(wake_read, 4096)

    def _safe_housekeeping(self) -> None:
        try:
            self.housekeeping()
        except sa.exc.SQLAlchemyError as exc:
            log.warning("outbox housekeeping failed: %s", str(exc))


def _delivered_or_pending(future: Any) -> bool:
    if future is None or isinstance(future, BaseException):
        return False
    return not future.is_done or bool(future.succeeded())


@dataclass(frozen=True)
class _Outcome:
    """What became of a batch: rows sent, rows refused, the first other error."""

    sent: list[int]
    refused: list[tuple[Any, BaseException]]
    transient: BaseException | None


def _outcome(rows: list[Any], futures: list[Any]) -> _Outcome:
    """Sort a batch's rows: acknowledged (in per-key order), refused, or waiting.

    Only the first failed row of a key is judged: the key's later rows were held
    back (or fail with it), so they neither count a refusal nor get marked sent.
    """
    sent: list[int] = []
    refused: list[tuple[Any, BaseException]] = []
    transient: BaseException | None = None
    failed_keys: set[str] = set()
    for row, future in zip(rows, futures, strict=True):
        if row.key in failed_keys:
            continue
        if isinstance(future, BaseException):
            error: BaseException | None = future
        elif future is None:  # not handed over: the batch stopped before it
            error = None
        elif not future.is_done:
            error = TimeoutError("not acknowledged within the flush timeout")
        elif future.succeeded():
            sent.append(row.seq)
            continue
        else:
            error = future.exception
        failed_keys.add(row.key)
        if isinstance(error, REFUSALS):
            refused.append((row, error))
        elif error is not None and transient is None:
            transient = error
    return _Outcome(sent, refused, transient)
