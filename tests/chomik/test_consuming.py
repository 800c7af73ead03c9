"""The consumer loop: inbox dedupe, one transaction per message, retries, DLQ, groups."""

from __future__ import annotations

import collections
import contextlib
import signal
import threading
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from chomik.db import make_session_factory
from chomik.messaging.consuming import Consumer
from chomik.messaging.kafka import (
    Envelope,
    dlq,
    ensure_topics,
    envelope_of,
    make_producer,
)
from chomik.messaging.outbox import emit
from tests.chomik.messaging_helpers import (
    EFFECTS_DDL,
    FAST_GROUP,
    Ping,
    read_topic,
    record_effect,
    scratch_tables,
    spawn,
    topic_size,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("committed_db")


@pytest.fixture
def engine(infra):
    with scratch_tables(infra.engine("orders"), EFFECTS_DDL) as engine:
        yield engine


@pytest.fixture
def topic(infra):
    name = f"test.consume.{uuid.uuid4().hex[:8]}"
    ensure_topics(infra.kafka, [name], partitions=1)
    return name


def publish(bootstrap, topic, values, headers=None):
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


def effects(engine):
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT key, n FROM test_effects ORDER BY serial")
        ).all()


def metric(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


@contextlib.contextmanager
def consuming(infra, engine, topic, handlers, **options) -> Iterator[Consumer]:
    consumer = Consumer(
        group_id=f"test-{uuid.uuid4().hex[:8]}",
        bootstrap_servers=infra.kafka,
        sessions=make_session_factory(engine),
        consumers=handlers,
        topics=[topic],
        consumer_options=FAST_GROUP,
        event_types={Ping.type: Ping},
        **options,
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


def test_duplicate_is_skipped_and_lag_falls_to_zero(infra, engine, topic):
    first, second = envelope_of(Ping("a", 1)), envelope_of(Ping("a", 2))
    publish(infra.kafka, topic, [first, first, second, first])
    with consuming(infra, engine, topic, {Ping.type: record_effect}) as consumer:
        labels = {"group": consumer.group_id, "topic": topic}
        wait_until(
            lambda: metric("consumer_duplicates_skipped_total", **labels) == 2, 20
        )
        wait_until(
            lambda: REGISTRY.get_sample_value(
                "consumer_lag", {**labels, "partition": "0"}
            ) == 0,
            10,
        )  # fmt: skip
        assert metric("consumer_messages_consumed_total", **labels) == 2
    assert effects(engine) == [("a", 1), ("a", 2)]


def test_failed_attempt_rolls_back_effect_and_outbox_and_retry_applies_once(
    infra, engine, topic
):
    attempts = collections.Counter()

    def flaky(session, event):
        record_effect(session, event)
        emit(session, Ping(event.key_id, event.n + 100), topic=topic)
        attempts[event.n] += 1
        if attempts[event.n] < 3:
            raise RuntimeError("transient")

    publish(infra.kafka, topic, [envelope_of(Ping("b", 1))])
    with consuming(
        infra, engine, topic, {Ping.type: flaky}, retry_backoff=0.01
    ) as consumer:
        labels = {"group": consumer.group_id, "topic": topic}
        wait_until(
            lambda: metric("consumer_messages_consumed_total", **labels) == 1, 20
        )
        assert metric("consumer_retries_total", **labels) == 2
    assert attempts[1] == 3
    assert effects(engine) == [("b", 1)]
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM outbox_events")) == 1
        assert conn.scalar(sa.text("SELECT count(*) FROM inbox_events")) == 1


def test_poison_and_unparseable_messages_go_to_the_dlq_and_the_partition_moves_on(
    infra, engine, topic
):
    good, poison, later = (
        envelope_of(Ping("c", 1)),
        envelope_of(Ping("c", 2, fail="always")),
        envelope_of(Ping("c", 3)),
    )
    publish(
        infra.kafka, topic, [good, b"{not json", poison, later], [("origin", b"test")]
    )
    with consuming(infra, engine, topic, {Ping.type: record_effect},
                   max_attempts=3, retry_backoff=0.01) as consumer:  # fmt: skip
        labels = {"group": consumer.group_id, "topic": topic}
        wait_until(lambda: ("c", 3) in effects(engine), 20)
        assert metric("consumer_dead_lettered_total", **labels) == 2
        assert metric("consumer_retries_total", **labels) == 2
    assert effects(engine) == [("c", 1), ("c", 3)]

    dead = read_topic(infra.kafka, dlq(topic))
    assert [r.value for r in dead] == [b"{not json", poison.to_json()]
    unparseable, failed = (dict(r.headers) for r in dead)
    assert unparseable["origin"] == failed["origin"] == b"test"
    assert unparseable["dlq.attempts"] == b"0"
    assert unparseable["dlq.error_type"] == b"MalformedMessageError"
    assert failed["dlq.attempts"] == b"3"
    assert b"poison event c/2" in failed["dlq.error"]
    assert failed["dlq.topic"] == topic.encode()
    assert failed["dlq.offset"] == b"2"


def test_database_outage_is_retried_not_dead_lettered(infra, engine, topic):
    calls = collections.Counter()

    def db_down_twice(session, event):
        calls["n"] += 1
        if calls["n"] <= 2:
            raise sa.exc.OperationalError("SELECT 1", {}, Exception("server closed"))
        record_effect(session, event)

    publish(infra.kafka, topic, [envelope_of(Ping("d", 1))])
    with consuming(infra, engine, topic, {Ping.type: db_down_twice}, max_attempts=1):
        wait_until(lambda: effects(engine) == [("d", 1)], 20)
    assert topic_size(infra.kafka, dlq(topic)) == 0


def test_two_consumer_processes_apply_each_event_once_in_per_key_order(
    infra, engine, tmp_path
):
    topic = f"test.group.{uuid.uuid4().hex[:8]}"
    ensure_topics(infra.kafka, [topic], partitions=6)
    keys = [f"key-{i}" for i in range(60)]
    per_key = 50  # 3000 events
    env = {
        "DATABASE_URL": infra.urls["orders"],
        "KAFKA_BOOTSTRAP_SERVERS": infra.kafka,
        "TEST_APP": f"group{uuid.uuid4().hex[:6]}",
        "TEST_TOPIC": topic,
    }
    children = [
        spawn("tests.chomik.worker_child", env, tmp_path / f"c{i}.log", "consumer")
        for i in range(2)
    ]
    try:
        publish(
            infra.kafka,
            topic,
            [envelope_of(Ping(key, n)) for n in range(per_key) for key in keys],
        )
        with engine.connect() as conn:
            wait_until(
                lambda: (
                    conn.scalar(sa.text("SELECT count(*) FROM test_effects")) >= 3000
                ),
                60,
                0.2,
            )
    finally:
        for child in children:
            child.send_signal(signal.SIGTERM)
        codes = [child.wait(20) for child in children]
    assert codes == [0, 0]

    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT key, n, pid FROM test_effects ORDER BY serial")
        ).all()
    assert len(rows) == len(keys) * per_key
    order: dict[str, list[int]] = collections.defaultdict(list)
    for key, n, _ in rows:
        order[key].append(n)
    assert all(order[key] == list(range(per_key)) for key in keys)
    assert len({pid for _, _, pid in rows}) == 2, "both members should have worked"


def test_envelope_and_events_round_trip_and_bad_input_is_malformed():
    from decimal import Decimal

    from chomik.messaging.kafka import MalformedMessageError, decode
    from clients.events import EVENT_TYPES, OrderItem, PaymentSucceeded
    from tests.factories.events import order_paid

    paid = order_paid("o-1", items=(OrderItem("p-1", 2),))
    envelope = envelope_of(paid, request_id="req-1")
    again = Envelope.from_json(envelope.to_json())
    assert again == envelope
    assert decode(again, EVENT_TYPES) == paid
    assert again.key == "o-1"

    payment = PaymentSucceeded("pay-1", "o-1", Decimal("12.50"))
    decoded = decode(Envelope.from_json(envelope_of(payment).to_json()), EVENT_TYPES)
    assert decoded == payment
    assert decoded.key == "pay-1"

    unknown = Envelope.from_json(
        envelope_of(paid).to_json().replace(b"order.paid", b"other.type")
    )
    assert decode(unknown, EVENT_TYPES) == unknown
    assert decode(again, {}) == again  # only the table given decides
    for raw in (b"", b"[]", b'{"id": "x"}', envelope.to_json().replace(b"+00:00", b"")):
        with pytest.raises(MalformedMessageError):
            Envelope.from_json(raw)
    renamed = envelope.to_json().replace(b'"order_id"', b'"nope"')
    with pytest.raises(MalformedMessageError):
        decode(Envelope.from_json(renamed), EVENT_TYPES)


def test_the_consumer_decodes_with_the_classes_of_its_consumers_table():
    from chomik.messaging.consuming import event_types_of
    from clients.events import OrderCancelled, OrderPaid

    def handler(session, event):
        raise AssertionError("not called")

    table = {OrderPaid: handler, OrderCancelled: handler, "other.raw": handler}
    assert event_types_of(table) == {
        "order.paid": OrderPaid,
        "order.cancelled": OrderCancelled,
    }


class _DriverError(Exception):
    def __init__(self, pgcode):
        super().__init__(pgcode)
        self.pgcode = pgcode


def _wrapped(inner):
    try:
        try:
            raise inner
        except Exception as exc:
            raise RuntimeError("prepare failed") from exc
    except RuntimeError as outer:
        return outer


@pytest.mark.parametrize(
    ("error", "outage"),
    [
        (sa.exc.OperationalError("SELECT 1", {}, _DriverError(None)), True),
        (_wrapped(sa.exc.OperationalError("SELECT 1", {}, _DriverError(None))), True),
        (sa.exc.TimeoutError("QueuePool limit reached"), True),
        (sa.exc.OperationalError("SELECT 1", {}, _DriverError("57014")), False),
        (sa.exc.OperationalError("SELECT 1", {}, _DriverError("40P01")), False),
        (ValueError("bad data"), False),
    ],
)
def test_outages_are_told_from_faults_of_the_message(error, outage):
    from chomik.messaging.consuming import _is_infrastructure

    assert _is_infrastructure(error) is outage


def test_a_handler_may_record_its_inbox_row_inside_a_two_phase_commit(
    infra, committed_db
):
    from chomik.messaging.consuming import owns_transaction, record_inbox
    from chomik.messaging.kafka import envelope_of
    from txcoord import Coordinator

    engines = {"payment": infra.engine("payment"), "orders": infra.engine("orders")}
    for engine in engines.values():
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "CREATE TABLE IF NOT EXISTS test_2pc_effects (id uuid PRIMARY KEY)"
                )
            )
    coordinator = Coordinator(
        engines, log=infra.engine("txcoord"), prefix=f"t{uuid.uuid4().hex[:6]}"
    )
    failures = ["once"]

    @owns_transaction
    def handler(entry, event):
        with coordinator.transaction() as tx:
            if not record_inbox(tx.session("payment"), entry):
                return False
            for name in engines:
                tx.session(name).execute(
                    sa.text("INSERT INTO test_2pc_effects VALUES (:id)"),
                    {"id": entry.event_id},
                )
            if failures:
                raise RuntimeError(failures.pop())
        return True

    consumer = Consumer(
        group_id="test-2pc",
        bootstrap_servers=infra.kafka,
        sessions=make_session_factory(engines["payment"]),
        consumers={"test.ping": handler},
    )
    envelope = envelope_of(Ping("k", 0))

    def effects():
        counts = []
        for engine in engines.values():
            with engine.connect() as conn:
                counts.append(
                    conn.scalar(sa.text("SELECT count(*) FROM test_2pc_effects"))
                )
        return counts

    with pytest.raises(RuntimeError):  # fails inside the block: nothing at all stays
        consumer.apply("test.pings", envelope, None)
    assert effects() == [0, 0]
    assert consumer.apply("test.pings", envelope, None) is True
    assert consumer.apply("test.pings", envelope, None) is False  # the inbox row held
    assert effects() == [1, 1]
