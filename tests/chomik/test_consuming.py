"""The consumer loop: inbox dedupe, one transaction per message, retries, DLQ, groups."""

from __future__ import annotations

import collections
import gc
import http.server
import json
import logging
import os
import signal
import threading
import time
import uuid

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from chomik.db import make_session_factory
from chomik.infra import KafkaBroker, free_port
from chomik.messaging import consuming as consuming_module
from chomik.messaging.consuming import Consumer
from chomik.messaging.kafka import (
    Envelope,
    dlq,
    ensure_topics,
    envelope_of,
)
from chomik.messaging.outbox import emit
from clients._http import (
    ConflictError,
    HttpClient,
    MalformedResponseError,
    NotFoundError,
    ServerError,
    TooManyRequestsError,
    TransportError,
)
from tests.chomik.messaging_helpers import (
    EFFECTS_DDL,
    FAST_GROUP,
    Ping,
    consuming,
    effects,
    metric,
    publish,
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


class Remote:
    """A remote service on a real port: down (nothing listens), then 503, then up."""

    def __init__(self):
        self.port = free_port()
        self.state = "503"
        self.calls = collections.Counter()
        self._server = None
        self._thread = None

    def start(self):
        remote = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the http.server hook name
                remote.calls[remote.state] += 1
                status = 503 if remote.state == "503" else 200
                body = json.dumps({"type": "unavailable"} if status == 503 else {})
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", self.port), Handler
        )
        self._thread = threading.Thread(target=self._server.serve_forever)
        self._thread.start()

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)


# An outage far longer than the bounded retries (3 tries, 0.01 s apart) allow, and
# outage waits of 1 to 4 s: longer than max_poll_interval_ms, so the consumer stays in
# its group only because it keeps polling while it waits.
def test_a_remote_outage_is_waited_out_and_never_dead_lettered(
    infra, engine, topic, caplog
):
    caplog.set_level(logging.WARNING, logger="kafka.coordinator")
    remote = Remote()
    client = HttpClient(f"http://127.0.0.1:{remote.port}", timeout=1, retries=0)

    def call_remote_then_record(session, event):
        client.request("GET", f"/stock/{event.key_id}")
        record_effect(session, event)

    started = time.monotonic()
    publish(infra.kafka, topic, [envelope_of(Ping("r", 1))])
    try:
        with consuming(
            infra, engine, topic, {Ping.type: call_remote_then_record},
            max_attempts=3, retry_backoff=0.01,
            outage_backoff=2.0, outage_backoff_max=4.0,
            consumer_options={**FAST_GROUP, "max_poll_interval_ms": 1500},
        ) as consumer:  # fmt: skip
            labels = {"group": consumer.group_id, "topic": topic}
            lag = {**labels, "partition": "0"}
            group = {"group": consumer.group_id}
            waits = lambda: metric("consumer_outage_waits_total", **group)  # noqa: E731
            wait_until(lambda: waits() >= 1, 20)  # down: TransportError
            publish(infra.kafka, topic, [envelope_of(Ping("r", 2))])
            wait_until(
                lambda: (REGISTRY.get_sample_value("consumer_lag", lag) or 0) >= 2, 10
            )

            remote.start()  # up, but answering 503: ServerError
            wait_until(lambda: remote.calls["503"] >= 1, 10)
            time.sleep(max(0.0, started + 9 - time.monotonic()))
            assert effects(engine) == []
            remote.state = "up"

            wait_until(lambda: len(effects(engine)) == 2, 20)
            assert time.monotonic() - started > 9
            wait_until(lambda: REGISTRY.get_sample_value("consumer_lag", lag) == 0, 10)

            # A fault of the message still goes to the DLQ after the bounded tries.
            publish(infra.kafka, topic, [envelope_of(Ping("r", 3, fail="always")),
                                         envelope_of(Ping("r", 4))])  # fmt: skip
            wait_until(lambda: ("r", 4) in effects(engine), 20)
            assert metric("consumer_dead_lettered_total", **labels) == 1
            assert metric("consumer_retries_total", **labels) == 2
            assert waits() >= 3
    finally:
        remote.stop()
        client.close()
    assert effects(engine) == [("r", 1), ("r", 2), ("r", 4)]
    (dead,) = read_topic(infra.kafka, dlq(topic))
    assert Envelope.from_json(dead.value).data["n"] == 3
    assert dict(dead.headers)["dlq.attempts"] == b"3"
    left = [r.getMessage() for r in caplog.records if "poll timeout" in r.getMessage()]
    assert left == [], "the consumer left its group while it waited"


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


def _raised_from(outer, inner):
    """`outer` as `raise outer from inner` leaves it."""
    outer.__cause__ = inner
    return outer


def _raised_within(outer, inner, *, suppress=False):
    """`outer` as raising it while handling `inner` leaves it (`from None`: suppress)."""
    outer.__context__ = inner
    outer.__suppress_context__ = suppress
    return outer


def _db_error(pgcode, kind=sa.exc.OperationalError):
    return kind("SELECT 1", {}, _DriverError(pgcode))


@pytest.mark.parametrize(
    ("error", "outage"),
    [
        (_db_error(None), True),
        (_db_error("57P01"), True),  # admin shutdown
        (_wrapped(_db_error(None)), True),
        (sa.exc.TimeoutError("QueuePool limit reached"), True),
        (_db_error("40P01"), True),  # deadlock
        (_db_error("40001"), True),  # serialization failure
        (_db_error("40001", sa.exc.DBAPIError), True),
        (_db_error("57014"), False),  # statement timeout
        (_db_error("55P03"), False),  # lock not available
        (_db_error("54000"), False),  # program limit (an oversized index entry)
        (_db_error("55000"), False),  # object not in prerequisite state
        (_db_error("08006"), True),  # connection failure
        (_db_error("53300"), True),  # too many connections
        (_db_error("23505", sa.exc.IntegrityError), False),
        (ValueError("bad data"), False),
        (TransportError("GET /x: refused"), True),
        (ServerError(503, {"type": "unavailable"}), True),
        (ServerError(500, {}), True),
        (TooManyRequestsError(429, {}), True),
        (_raised_from(RuntimeError("carrier call failed"), TransportError("x")), True),
        (_raised_within(ValueError("while retrying"), ServerError(502, {})), True),
        (
            _raised_within(ValueError("mapped"), TransportError("x"), suppress=True),
            False,
        ),  # fmt: skip
        (NotFoundError(404, {}), False),
        (ConflictError(409, {}), False),
        (MalformedResponseError(200, {}), False),
    ],
)
def test_outages_are_told_from_faults_of_the_message(error, outage):
    from chomik.messaging.consuming import is_outage

    assert is_outage(error) is outage


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
        event_types={Ping.type: Ping},
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


def gaps_between(times: list[float]) -> list[float]:
    """Seconds between each time and the next."""
    return [b - a for a, b in zip(times, times[1:], strict=False)]


def watch_consumers(monkeypatch, watch) -> None:
    """Call `watch(consumer)` on every consumer the module makes from now."""
    real = consuming_module.make_consumer

    def made(*args, **kwargs):
        consumer = real(*args, **kwargs)
        watch(consumer)
        return consumer

    monkeypatch.setattr(consuming_module, "make_consumer", made)


def timed_polls(monkeypatch) -> list[float]:
    """When each poll with partitions assigned began, for consumers made from now."""
    polls: list[float] = []

    def watch(consumer) -> None:
        poll = consumer.poll

        def counted(*a, **k):
            if consumer.assignment():
                polls.append(time.monotonic())
            return poll(*a, **k)

        consumer.poll = counted

    watch_consumers(monkeypatch, watch)
    return polls


def fetch_waits(monkeypatch) -> list[int]:
    """The broker wait (ms) of every fetch sent, for consumers made from now."""
    waits: list[int] = []

    def watch(consumer) -> None:
        fetcher = consumer._fetcher
        build = fetcher._create_fetch_requests

        def built(*a, **k):
            requests = build(*a, **k)
            waits.extend(request.max_wait_ms for request, _ in requests.values())
            return requests

        fetcher._create_fetch_requests = built

    watch_consumers(monkeypatch, watch)
    return waits


def test_an_idle_consumer_fetches_ever_longer_waits_and_a_record_shortens_them(
    infra, engine, topic, monkeypatch
):
    waits = fetch_waits(monkeypatch)
    options = {"idle_after": 0.5, "idle_wait": 0.1, "idle_wait_max": 0.8}
    with consuming(infra, engine, topic, {Ping.type: record_effect}, **options):
        wait_until(lambda: waits.count(800) >= 3, 30, 0.05)
        # Busy at 50 ms, then 100, 200, 400 and 800 ms asked of the broker (one
        # poll may send more than one fetch of a wait).
        steps = [w for i, w in enumerate(waits) if i == 0 or w != waits[i - 1]]
        assert steps[:5] == [50, 100, 200, 400, 800], waits
        publish(infra.kafka, topic, [envelope_of(Ping("w", 1))])
        wait_until(lambda: effects(engine) == [("w", 1)], 10, 0.05)
        woken = len(waits)
        wait_until(lambda: len(waits) >= woken + 3, 10, 0.05)
        assert 50 in waits[woken:], waits[woken:]  # short again after the record


def test_a_record_during_an_idle_wait_is_not_held_to_its_end(
    infra, engine, topic, monkeypatch
):
    # The consumer waits at the broker, not on its own: the broker answers the
    # fetch once the record is there (the embedded broker at its next look,
    # halfway through an 8 s wait), where a pause would hold it about 7.5 s.
    polls = timed_polls(monkeypatch)
    options = {"idle_after": 0.2, "idle_wait": 8.0, "idle_wait_max": 8.0}
    with consuming(infra, engine, topic, {Ping.type: record_effect}, **options):
        wait_until(lambda: polls and time.monotonic() - polls[0] > 10, 30, 0.05)
        idle = len(polls)
        wait_until(lambda: len(polls) > idle, 12, 0.01)  # an 8 s poll begins
        time.sleep(0.5)
        publish(infra.kafka, topic, [envelope_of(Ping("w", 1))])
        published = time.monotonic()
        wait_until(lambda: effects(engine) == [("w", 1)], 15, 0.02)
        assert time.monotonic() - published < 5.5


def test_a_consumer_without_an_idle_wait_never_lengthens_its_fetches(
    infra, engine, topic, monkeypatch
):
    polls = timed_polls(monkeypatch)
    options = {"idle_after": 0.2, "idle_wait": 0.5, "idle_wait_max": 0}
    with consuming(infra, engine, topic, {Ping.type: record_effect}, **options):
        wait_until(lambda: len(polls) >= 2, 30, 0.05)
        time.sleep(1.5)  # well past idle_after
        start = len(polls)
        time.sleep(1.0)
        gaps = gaps_between(polls[start:])
        assert len(gaps) >= 2, gaps
        assert max(gaps) < 0.45, gaps  # a poll's worth of 50 ms fetches


# kafka-python leaves the sockets of refused connections to the garbage collector.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_a_broker_that_refuses_connections_is_waited_out(
    infra, engine, tmp_path, caplog
):
    caplog.set_level(logging.CRITICAL, logger="kafka")
    broker = KafkaBroker(port=free_port(), log_path=tmp_path / "tansu.log")
    topic = "test.refused"
    broker.start()
    consumer = Consumer(
        group_id=f"test-{uuid.uuid4().hex[:8]}",
        bootstrap_servers=broker.bootstrap_servers,
        sessions=make_session_factory(engine),
        consumers={Ping.type: record_effect},
        topics=[topic],
        outage_backoff=0.2, outage_backoff_max=1.0,
        consumer_options=FAST_GROUP, event_types={Ping.type: Ping},
    )  # fmt: skip
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,))
    try:
        ensure_topics(broker.bootstrap_servers, [topic], partitions=1)
        publish(broker.bootstrap_servers, topic, [envelope_of(Ping("b", 1))])
        thread.start()
        wait_until(lambda: effects(engine) == [("b", 1)], 30)
        os.killpg(broker.process.pid, signal.SIGKILL)  # refused from now on
        broker.process.wait()
        broker.process = None
        # kafka-python may give up on the lost broker in a poll (looking for the
        # group's coordinator), or while the consumer is made again: the loop must
        # outlive each (`test_each_kafka_error_of_the_consumer_is_waited_out`).
        deadline = time.monotonic() + 20
        while thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert thread.is_alive()
        broker.start()  # in memory: a new, empty broker on the same port
        ensure_topics(broker.bootstrap_servers, [topic], partitions=1)
        publish(broker.bootstrap_servers, topic, [envelope_of(Ping("b", 2))])
        wait_until(lambda: effects(engine) == [("b", 1), ("b", 2)], 60)
    finally:
        stop.set()
        thread.join(15)
        broker.stop()
        gc.collect()
    assert not thread.is_alive()


def test_each_kafka_error_of_the_consumer_is_waited_out(
    infra, engine, topic, monkeypatch
):
    from kafka.errors import KafkaConnectionError, KafkaTimeoutError

    made = collections.Counter()
    real_make = consuming_module.make_consumer

    def make_consumer(*args, **kwargs):
        made["n"] += 1
        if made["n"] <= 2:  # the broker does not answer: making it times out
            raise KafkaTimeoutError("Unable to bootstrap")
        consumer = real_make(*args, **kwargs)
        if made["n"] == 3:  # its first poll loses the broker, as in a coordinator
            real_poll = consumer.poll  # lookup that is refused

            def poll(*args, **kwargs):
                if not made["refused"]:
                    made["refused"] += 1
                    raise KafkaConnectionError("111 ECONNREFUSED")
                return real_poll(*args, **kwargs)

            consumer.poll = poll
        return consumer

    monkeypatch.setattr(consuming_module, "make_consumer", make_consumer)
    publish(infra.kafka, topic, [envelope_of(Ping("k", 1))])
    with consuming(
        infra, engine, topic, {Ping.type: record_effect},
        outage_backoff=0.05, outage_backoff_max=0.2,
    ) as consumer:  # fmt: skip
        wait_until(lambda: effects(engine) == [("k", 1)], 30)
        assert made == {"n": 4, "refused": 1}
        assert metric("consumer_outage_waits_total", group=consumer.group_id) == 3


def test_a_kafka_error_that_is_no_outage_ends_the_loop(
    infra, engine, topic, monkeypatch
):
    from kafka.errors import CorruptRecordError

    real_make = consuming_module.make_consumer

    def make_consumer(*args, **kwargs):
        consumer = real_make(*args, **kwargs)

        def poll(*args, **kwargs):
            raise CorruptRecordError("bad CRC")

        consumer.poll = poll
        return consumer

    monkeypatch.setattr(consuming_module, "make_consumer", make_consumer)
    consumer = Consumer(
        group_id=f"test-{uuid.uuid4().hex[:8]}", bootstrap_servers=infra.kafka,
        sessions=make_session_factory(engine), consumers={Ping.type: record_effect},
        topics=[topic], consumer_options=FAST_GROUP, event_types={Ping.type: Ping},
    )  # fmt: skip
    with pytest.raises(CorruptRecordError):  # the worker stops: a bug, not an outage
        consumer.run(threading.Event())


# kafka-python starts a client's network thread before it reaches the broker.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_clients_that_cannot_reach_the_broker_leave_no_thread_behind(caplog):
    from kafka.errors import KafkaTimeoutError

    from chomik.messaging.kafka import make_consumer

    caplog.set_level(logging.CRITICAL, logger="kafka")
    nowhere = f"127.0.0.1:{free_port()}"
    threads = threading.active_count()
    for _ in range(3):
        with pytest.raises(KafkaTimeoutError):
            make_consumer(nowhere, "g", bootstrap_timeout_ms=300)
        with pytest.raises(KafkaTimeoutError):
            ensure_topics(nowhere, ["t"])
    assert threading.active_count() == threads
    gc.collect()  # the refused sockets, within the test (see the filter above)
