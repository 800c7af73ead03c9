"""Kafka plumbing: the envelope, the event base class, producers, consumers, topics.

Every message on every topic is an `Envelope` serialized as JSON; its `key` (the entity
id) is also the Kafka message key, so one entity's events stay on one partition, in
order. Concrete event types subclass `Event` in `clients/events.py` and are listed in
its one table of event types; the kit itself only knows envelopes and the `Event` base,
and decodes with the table it is given.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import types
import typing
import uuid
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, Self, TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError
from kafka.net.compat import KafkaNetClient

from chomik.settings import DEFAULT_PARTITIONS

DLQ_SUFFIX = ".dlq"
T = TypeVar("T")


def dlq(topic: str) -> str:
    """The dead-letter topic of `topic`."""
    return topic + DLQ_SUFFIX


class MalformedMessageError(ValueError):
    """A message that is not a valid envelope (or not a valid event of its type)."""


def _json_default(value: Any) -> Any:
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, tuple | frozenset | set):
        return list(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


@dataclasses.dataclass(frozen=True)
class Envelope:
    """One message: `{id, type, occurred_at, key, data, request_id}`."""

    id: uuid.UUID
    type: str
    occurred_at: dt.datetime
    key: str
    data: Mapping[str, Any]
    request_id: str | None = None

    def to_json(self) -> bytes:
        """Serialize to UTF-8 JSON."""
        body = {
            "id": str(self.id),
            "type": self.type,
            "occurred_at": self.occurred_at.isoformat(),
            "key": self.key,
            "data": dict(self.data),
            "request_id": self.request_id,
        }
        return json.dumps(body, default=_json_default, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes | str | None) -> Self:
        """Parse a message value; raise `MalformedMessageError` on anything invalid."""
        try:
            body = json.loads(raw) if raw is not None else None
            if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
                raise MalformedMessageError(
                    "envelope must be an object with object `data`"
                )
            occurred_at = dt.datetime.fromisoformat(body["occurred_at"])
            if occurred_at.tzinfo is None:
                raise MalformedMessageError("occurred_at must carry a time zone")
            request_id = body.get("request_id")
            if not isinstance(body["type"], str) or not isinstance(body["key"], str):
                raise MalformedMessageError("type and key must be strings")
            return cls(
                id=uuid.UUID(body["id"]),
                type=body["type"],
                occurred_at=occurred_at.astimezone(dt.UTC),
                key=body["key"],
                data=body["data"],
                request_id=request_id if isinstance(request_id, str) else None,
            )
        except MalformedMessageError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise MalformedMessageError(f"unparseable envelope: {exc}") from exc


@dataclasses.dataclass(frozen=True)
class Event:
    """Base of every event type: subclasses set `type` and `topic` and declare fields.

    The entity key is the value of the field named by `key_field` (default: the
    first field). Fields may be JSON values, `uuid.UUID`, `Decimal`, `datetime`,
    frozen dataclasses of those, or tuples of them; they are converted both ways.
    An event is strict: every field must be given, with a value of its declared
    type, when it is built and when it is decoded (`MalformedMessageError`).
    """

    type: ClassVar[str]
    topic: ClassVar[str]
    key_field: ClassVar[str | None] = None

    def __post_init__(self) -> None:
        for name, hint in _field_hints(type(self)).items():
            if not _conforms(hint, getattr(self, name)):
                raise MalformedMessageError(
                    f"{self.type}: field {name!r} must be {hint}, "
                    f"not {getattr(self, name)!r}"
                )

    @property
    def key(self) -> str:
        """The Kafka key: the entity id this event is about."""
        name = self.key_field or dataclasses.fields(self)[0].name
        return str(getattr(self, name))

    def to_data(self) -> dict[str, Any]:
        """The envelope's `data`: JSON-ready values."""
        raw = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        result: dict[str, Any] = json.loads(json.dumps(raw, default=_json_default))
        return result

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Self:
        """Build the event from envelope `data`; `MalformedMessageError` if bad."""
        try:
            return cls(**_load_fields(cls, data, cls.type))
        except MalformedMessageError:
            raise
        except (ValueError, TypeError, AttributeError, InvalidOperation) as exc:
            raise MalformedMessageError(f"{cls.type}: {exc!r}") from exc


_HINTS: dict[Any, dict[str, Any]] = {}


def _field_hints(klass: Any) -> dict[str, Any]:
    """`{field: resolved annotation}` of a dataclass, worked out once per class."""
    if klass not in _HINTS:
        hints = typing.get_type_hints(klass)
        _HINTS[klass] = {f.name: hints[f.name] for f in dataclasses.fields(klass)}
    return _HINTS[klass]


def _load_fields(klass: type[Any], data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise MalformedMessageError(f"{what}: expected an object, not {data!r}")
    values: dict[str, Any] = {}
    for name, hint in _field_hints(klass).items():
        if name not in data:
            raise MalformedMessageError(f"{what}: missing field {name!r}")
        values[name] = _convert(hint, data[name], f"{what}.{name}")
    return values


def _conforms(hint: Any, value: Any) -> bool:
    """Whether a value has the annotated type (dataclasses and tuples checked deeply)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(arg, value) for arg in args)
    if origin is tuple:
        return isinstance(value, tuple) and _conforms_items(args, value)
    if origin is not None:
        return isinstance(value, origin)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return isinstance(value, hint) and all(
            _conforms(item, getattr(value, name))
            for name, item in _field_hints(hint).items()
        )
    return _is_scalar(hint, value)


def _conforms_items(args: tuple[Any, ...], value: tuple[Any, ...]) -> bool:
    if len(args) == 2 and args[1] is Ellipsis:
        return all(_conforms(args[0], item) for item in value)
    return len(args) == len(value) and all(map(_conforms, args, value))


def _is_scalar(hint: Any, value: Any) -> bool:
    if hint is type(None):
        return value is None
    if hint in (int, float) and isinstance(value, bool):
        return False  # a bool is an int to Python, never to the contract
    if hint is float:
        return isinstance(value, int | float)
    return not isinstance(hint, type) or isinstance(value, hint)


def _convert(hint: Any, value: Any, what: str = "") -> Any:
    """Convert one JSON value to the annotated type (UUID, Decimal, dataclass...)."""
    if value is None:
        return None
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, what) if len(inner) == 1 else value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise MalformedMessageError(f"{what}: expected a list, not {value!r}")
        item = args[0] if args else Any
        return tuple(_convert(item, v, what) for v in value)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return hint(**_load_fields(hint, value, what))
    scalar = _SCALARS.get(hint)
    return value if scalar is None else scalar(value)


def _decimal(value: Any) -> Decimal:
    number = Decimal(str(value))
    if not number.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    return number


def _aware_datetime(value: Any) -> dt.datetime:
    moment = dt.datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError(f"{value!r} carries no time zone")
    return moment.astimezone(dt.UTC)


# JSON scalars read back as the annotated type.
_SCALARS: dict[Any, Any] = {
    uuid.UUID: lambda value: uuid.UUID(str(value)),
    Decimal: _decimal,
    dt.datetime: _aware_datetime,
}


def envelope_of(event: Event, *, request_id: str | None = None) -> Envelope:
    """Wrap an event in a fresh envelope (new id, occurred now)."""
    return Envelope(
        id=uuid.uuid4(),
        type=event.type,
        occurred_at=dt.datetime.now(dt.UTC),
        key=event.key,
        data=event.to_data(),
        request_id=request_id,
    )


def event_table(*classes: type[Event]) -> dict[str, type[Event]]:
    """`{event type: class}` of the given classes; a type declared twice is an error."""
    table: dict[str, type[Event]] = {}
    for klass in classes:
        if table.setdefault(klass.type, klass) is not klass:
            raise TypeError(f"event type {klass.type!r} declared twice")
    return table


def decode(envelope: Envelope, types: Mapping[str, type[Event]]) -> Event | Envelope:
    """The typed event of an envelope when `types` knows its type, else the envelope."""
    klass = types.get(envelope.type)
    return envelope if klass is None else klass.from_data(envelope.data)


def split_servers(bootstrap_servers: str) -> list[str]:
    return [s.strip() for s in bootstrap_servers.split(",") if s.strip()]


def make_producer(bootstrap_servers: str, **overrides: Any) -> KafkaProducer:
    """The idempotent producer (`acks=all`); it fails fast when no broker answers."""
    config: dict[str, Any] = {
        "bootstrap_servers": split_servers(bootstrap_servers),
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "max_block_ms": 5000,
        "bootstrap_timeout_ms": 5000,  # making it blocks until a broker answers
        "request_timeout_ms": 5000,
        "delivery_timeout_ms": 10000,
        "reconnect_backoff_max_ms": 1000,
        "metrics_enabled": False,  # the client's own sensors: CPU on every send
    }
    config.update(overrides)
    return closed_on_failure(KafkaProducer, config)


def make_consumer(
    bootstrap_servers: str, group_id: str, **overrides: Any
) -> KafkaConsumer:
    """A consumer that never commits on its own: offsets follow the database commit."""
    config: dict[str, Any] = {
        "bootstrap_servers": split_servers(bootstrap_servers),
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_poll_records": 200,
        "fetch_max_wait_ms": 50,
        "reconnect_backoff_max_ms": 1000,
        "metrics_enabled": False,  # the client's own sensors: CPU on every fetch
        # Making the consumer blocks until the broker answers (30 s by default),
        # and a stop waits for it: the consumer loop tries again after a backoff.
        "bootstrap_timeout_ms": 2000,
    }
    config.update(overrides)
    return closed_on_failure(KafkaConsumer, config)


def closed_on_failure(make: Callable[..., T], config: dict[str, Any]) -> T:
    """`make(**config)` for a kafka-python client, whose network thread and sockets
    are closed if making it fails.

    kafka-python starts the network client's thread before it reaches the broker,
    and a client that cannot bootstrap is never returned: nothing could close it,
    and each attempt in an outage would leave a thread and its sockets behind.
    """
    made: list[KafkaNetClient] = []

    def network_client(**configs: Any) -> KafkaNetClient:
        made.append(KafkaNetClient(**configs))
        return made[-1]

    try:
        return make(**config, kafka_client=network_client)
    except BaseException:
        for client in made:
            client.close()
        raise


def fetch_wait(consumer: KafkaConsumer) -> float:
    """Seconds the broker may hold the consumer's next fetch while no record is there."""
    return float(consumer._fetcher.config["fetch_max_wait_ms"]) / 1000


def set_fetch_wait(consumer: KafkaConsumer, seconds: float) -> None:
    """Change how long the broker may hold the consumer's next fetch.

    kafka-python takes `fetch_max_wait_ms` only when the consumer is made, but its
    fetcher reads the value for every fetch it builds; this sets that value. A fetch
    already on its way keeps its own: when records came while nobody polled, the
    poll that returns them has already sent the next fetch, with the wait of then.
    """
    consumer._fetcher.config["fetch_max_wait_ms"] = max(1, int(seconds * 1000))


def ensure_topics(
    bootstrap_servers: str,
    topics: Iterable[str],
    *,
    partitions: int = DEFAULT_PARTITIONS,
) -> None:
    """Create missing topics (each with its `.dlq`); existing ones are left alone."""
    names = sorted({t for topic in topics for t in (topic, dlq(topic))})
    if not names:
        return
    # A broker that does not answer is given 5 s (30 by default), so a worker
    # starting while it is away begins its other work without that wait.
    admin = closed_on_failure(
        KafkaAdminClient,
        {
            "bootstrap_servers": split_servers(bootstrap_servers),
            "bootstrap_timeout_ms": 5000,
        },
    )
    try:
        existing = set(admin.list_topics())
        missing = [n for n in names if n not in existing]
        for name in missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        admin.close()
