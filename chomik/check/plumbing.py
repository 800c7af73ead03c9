"""The plumbing's invariants: no stale prepared transaction, outboxes drained, no DLQ."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from kafka import KafkaConsumer
from kafka.errors import KafkaError

from chomik.check.base import Limits, Snapshots, Violation
from chomik.messaging.dlq import DeadLetterError, read_dead_letters
from chomik.messaging.kafka import DLQ_SUFFIX, dlq, split_servers


def no_stale_prepared(snap: Snapshots, limits: Limits) -> Iterator[Violation]:
    """No prepared transaction outlives the txcoord timeout (recovery ends each)."""
    for name in snap.connections:
        for row in snap.rows(
            name,
            "SELECT gid, database, EXTRACT(EPOCH FROM now() - prepared)::float8 AS age "
            "FROM pg_prepared_xacts WHERE database = current_database() "
            "AND prepared < now() - make_interval(secs => :timeout) ORDER BY gid",
            timeout=limits.txcoord_timeout,
        ):
            yield Violation(
                "no-stale-prepared",
                f"transaction {row['gid']} has been prepared in {row['database']} "
                f"for {row['age']:.0f} s",
                (row["gid"],),
            )


def _outboxes(snap: Snapshots) -> Iterator[str]:
    for name in snap.connections:
        if snap.scalar(name, "SELECT to_regclass('outbox_events') IS NOT NULL"):
            yield name


def outbox_drained(snap: Snapshots, limits: Limits) -> Iterator[Violation]:
    """No outbox row waits to be published longer than the bound (the relay runs)."""
    for name in _outboxes(snap):
        rows = snap.rows(
            name,
            "SELECT id::text AS id, topic, type, "
            "EXTRACT(EPOCH FROM now() - created_at)::float8 AS age "
            "FROM outbox_events WHERE sent_at IS NULL AND parked_at IS NULL "
            "AND created_at < now() - make_interval(secs => :bound) ORDER BY seq",
            bound=limits.outbox_age,
        )
        for row in rows:
            yield Violation(
                "outbox-drained",
                f"{name}: event {row['id']} ({row['type']} to {row['topic']}) "
                f"unpublished for {row['age']:.0f} s",
                (row["id"],),
            )


def outbox_none_parked(snap: Snapshots, limits: Limits) -> Iterator[Violation]:
    """No outbox row is parked (refused by the broker for good)."""
    for name in _outboxes(snap):
        rows = snap.rows(
            name,
            "SELECT id::text AS id, topic, type, last_error FROM outbox_events "
            "WHERE parked_at IS NOT NULL ORDER BY seq",
        )
        for row in rows:
            yield Violation(
                "outbox-none-parked",
                f"{name}: event {row['id']} ({row['type']} to {row['topic']}) is "
                f"parked: {row['last_error']}",
                (row["id"],),
            )


def dlq_empty(kafka: str, topics: Sequence[str] | None) -> Iterator[Violation]:
    """No dead letter in `<topic>.dlq` for `topics` (None: every `.dlq` topic)."""
    try:
        for topic in _dead_letter_topics(kafka, topics):
            for letter in read_dead_letters(kafka, topic):
                yield Violation(
                    "dlq-empty",
                    f"{dlq(topic)} {letter.ref}: {letter.error_type} {letter.error}",
                    (f"{dlq(topic)}@{letter.ref}",),
                )
    except (KafkaError, DeadLetterError) as exc:
        yield Violation("dlq-empty", f"the dead letters could not be read: {exc!r}")


def _dead_letter_topics(kafka: str, topics: Sequence[str] | None) -> list[str]:
    """The source topics among `topics` (None: all) whose dead-letter topic exists."""
    consumer = KafkaConsumer(
        bootstrap_servers=split_servers(kafka), reconnect_backoff_max_ms=1000
    )
    try:
        names = consumer.topics()
    finally:
        consumer.close()
    found = sorted(n[: -len(DLQ_SUFFIX)] for n in names if n.endswith(DLQ_SUFFIX))
    return found if topics is None else [t for t in found if t in topics]
