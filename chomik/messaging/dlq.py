"""Dead letters: list, show and replay what the consumer loop sent to `<topic>.dlq`.

The consumer loop publishes a message it cannot apply to `<topic>.dlq` with the
original key, value and headers plus `dlq.*` headers: `dlq.error`, `dlq.error_type`,
`dlq.attempts`, `dlq.topic`, `dlq.partition`, `dlq.offset`, `dlq.group`. A dead
letter is named by its place in the dead-letter topic, `<partition>:<offset>`.

Reading uses a consumer with no group (every partition assigned, read from the
beginning up to the end offsets taken at the start), so it moves no group's offsets
and never waits for new messages. A replay publishes the chosen dead letters to
their source topic with the original key, value and headers (the `dlq.*` ones
removed) and waits for the broker's acknowledgement. Consumers deduplicate by event
id in their inbox, so replaying an event that was applied meanwhile is a no-op; one
that fails again is dead-lettered again, as a new dead letter. `chomik dlq` is the
command line over these functions.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError

from chomik.messaging.kafka import (
    DLQ_SUFFIX,
    Envelope,
    MalformedMessageError,
    dlq,
    make_producer,
    split_servers,
)
from chomik.settings import Settings

__all__ = [
    "DeadLetter",
    "DeadLetterError",
    "bootstrap_servers_from",
    "describe",
    "dlq",
    "parse_ref",
    "read_dead_letters",
    "replay",
    "select",
    "summary",
]

HEADER_PREFIX = "dlq."


class DeadLetterError(RuntimeError):
    """No such dead-letter topic or dead letter, or the broker could not be used."""


@dataclass(frozen=True)
class DeadLetter:
    """One message of `<topic>.dlq`: the original message and why it failed."""

    topic: str  # the source topic it is replayed to
    partition: int  # its place in the dead-letter topic
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    timestamp: dt.datetime | None

    @property
    def ref(self) -> str:
        """`<partition>:<offset>` in the dead-letter topic."""
        return f"{self.partition}:{self.offset}"

    def header(self, name: str) -> str:
        """The last value of header `name`, decoded ("" when absent)."""
        values = [v for k, v in self.headers if k == name]
        return values[-1].decode(errors="replace") if values else ""

    @property
    def error(self) -> str:
        return self.header("dlq.error")

    @property
    def error_type(self) -> str:
        return self.header("dlq.error_type")

    @property
    def attempts(self) -> str:
        return self.header("dlq.attempts")

    @property
    def source(self) -> str:
        """Where it was read from: `<topic> <partition>:<offset> (group <group>)`."""
        place = f"{self.header('dlq.partition')}:{self.header('dlq.offset')}"
        return f"{self.header('dlq.topic')} {place} (group {self.header('dlq.group')})"

    @property
    def original_headers(self) -> list[tuple[str, bytes]]:
        """The headers the message had before it was dead-lettered."""
        return [(k, v) for k, v in self.headers if not k.startswith(HEADER_PREFIX)]

    @property
    def envelope(self) -> Envelope | None:
        """The parsed envelope, or None when the value was never a valid one."""
        try:
            return Envelope.from_json(self.value)
        except MalformedMessageError:
            return None


def bootstrap_servers_from(environ: Mapping[str, str]) -> str:
    """The broker address as every process reads it (`KAFKA_BOOTSTRAP_SERVERS`)."""
    only = {k: v for k, v in environ.items() if k == "KAFKA_BOOTSTRAP_SERVERS"}
    return Settings.from_env(only).kafka_bootstrap_servers


def parse_ref(text: str) -> tuple[int, int]:
    """`"<partition>:<offset>"` as two integers; DeadLetterError if malformed."""
    partition, _, offset = text.partition(":")
    try:
        return int(partition), int(offset)
    except ValueError:
        raise DeadLetterError(
            f"{text!r} is not <partition>:<offset> (as `list` prints it)"
        ) from None


def read_dead_letters(
    bootstrap_servers: str, topic: str, *, timeout: float = 30.0
) -> list[DeadLetter]:
    """Every dead letter of `topic` (the source topic), oldest first per partition."""
    if topic.endswith(DLQ_SUFFIX):
        raise DeadLetterError(f"name the source topic, not {topic!r}")
    name = dlq(topic)
    consumer = KafkaConsumer(
        bootstrap_servers=split_servers(bootstrap_servers),
        group_id=None,
        enable_auto_commit=False,
        reconnect_backoff_max_ms=1000,
    )
    try:
        deadline = time.monotonic() + timeout
        partitions = _partitions(consumer, name, time.monotonic() + min(timeout, 5.0))
        tps = [TopicPartition(name, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        letters: list[DeadLetter] = []
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise DeadLetterError(f"could not read {name} to its end in {timeout}s")
            for tp, records in consumer.poll(timeout_ms=200).items():
                letters.extend(
                    _letter(topic, record) for record in records
                    if record.offset < ends[tp]
                )  # fmt: skip
        return sorted(letters, key=lambda letter: (letter.partition, letter.offset))
    except KafkaError as exc:
        raise DeadLetterError(f"reading {name} failed: {exc!r}") from exc
    finally:
        consumer.close(autocommit=False)


def _partitions(consumer: KafkaConsumer, name: str, deadline: float) -> set[int]:
    while True:
        partitions = consumer.partitions_for_topic(name)
        if partitions:
            return set(partitions)
        if time.monotonic() > deadline:
            raise DeadLetterError(f"no topic {name}")
        time.sleep(0.1)


def _letter(topic: str, record: ConsumerRecord) -> DeadLetter:
    stamp = record.timestamp
    return DeadLetter(
        topic=topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value or b"",
        headers=tuple(record.headers or ()),
        timestamp=(
            dt.datetime.fromtimestamp(stamp / 1000, dt.UTC)
            if isinstance(stamp, int) and stamp >= 0
            else None
        ),
    )


def select(letters: Iterable[DeadLetter], refs: Iterable[str]) -> list[DeadLetter]:
    """The dead letters named by `refs`, in that order; DeadLetterError if unknown."""
    by_place = {(letter.partition, letter.offset): letter for letter in letters}
    chosen = []
    for ref in refs:
        place = parse_ref(ref)
        if place not in by_place:
            raise DeadLetterError(f"no dead letter at {ref}")
        chosen.append(by_place[place])
    return chosen


def replay(
    bootstrap_servers: str,
    letters: Iterable[DeadLetter],
    *,
    producer_factory: Callable[[], KafkaProducer] | None = None,
    timeout: float = 15.0,
) -> int:
    """Publish `letters` again to their source topics, as they first were; return how
    many were acknowledged (all of them, or DeadLetterError)."""
    chosen = list(letters)
    if not chosen:
        return 0
    producer = (producer_factory or (lambda: make_producer(bootstrap_servers)))()
    try:
        futures = [
            producer.send(
                letter.topic,
                key=letter.key,
                value=letter.value,
                headers=letter.original_headers,
            )
            for letter in chosen
        ]
        producer.flush(timeout=timeout)
        for future in futures:
            future.get(timeout=timeout)
    except KafkaError as exc:
        raise DeadLetterError(f"replay failed: {exc!r}") from exc
    finally:
        producer.close(timeout=2)
    return len(chosen)


def describe(letter: DeadLetter) -> str:
    """One dead letter in full, for `chomik dlq show`."""
    envelope = letter.envelope
    lines = [
        f"dead letter {letter.ref} of {dlq(letter.topic)}",
        f"source:     {letter.source}",
        f"key:        {(letter.key or b'').decode(errors='replace')}",
        f"event:      {envelope.type} {envelope.id}" if envelope else "event:      -",
        f"attempts:   {letter.attempts}",
        f"error type: {letter.error_type}",
        f"at:         {letter.timestamp.isoformat() if letter.timestamp else '-'}",
        "error:",
        *(f"  {line}" for line in letter.error.splitlines()),
        "headers:",
        *(f"  {k}: {v.decode(errors='replace')}" for k, v in letter.original_headers),
        "value:",
        _pretty(letter.value),
    ]
    return "\n".join(lines)


def summary(letter: DeadLetter) -> str:
    """One line per dead letter, for `chomik dlq list`."""
    envelope = letter.envelope
    event = f"{envelope.type} {envelope.id}" if envelope else "(unparseable)"
    first = letter.error.splitlines()[0] if letter.error else ""
    return (
        f"{letter.ref:<10} {letter.attempts:>3}  {letter.error_type:<24} "
        f"{event}  {first}"
    )


def _pretty(value: bytes) -> str:
    try:
        return json.dumps(json.loads(value), indent=2, sort_keys=True)
    except ValueError:
        return repr(value)
