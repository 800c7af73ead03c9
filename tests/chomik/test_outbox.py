"""The transactional outbox and its relay, against real PostgreSQL and Tansu."""

from __future__ import annotations

import collections
import datetime as dt
import gc
import logging
import signal
import threading
import uuid

import pytest
import sqlalchemy as sa
from kafka.errors import MessageSizeTooLargeError
from kafka.future import Future
from prometheus_client import REGISTRY
from sqlalchemy.orm import Session

from chomik import cli
from chomik.db import make_session_factory
from chomik.infra import KafkaBroker, free_port
from chomik.logs import request_id_var
from chomik.messaging.kafka import Envelope, ensure_topics, make_producer
from chomik.messaging.outbox import (
    Relay,
    RelayConfig,
    emit,
    prune_messages,
    republish,
    wake_relays,
)
from tests.chomik.messaging_helpers import (
    EFFECTS_DDL,
    Ping,
    envelopes,
    read_topic,
    record_effect,
    scratch_tables,
    spawn,
    topic_size,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("committed_db")


@pytest.fixture
def effects_table(infra):
    with scratch_tables(infra.engine("orders"), EFFECTS_DDL):
        yield


@pytest.fixture
def topic(infra):
    name = f"test.outbox.{uuid.uuid4().hex[:8]}"
    ensure_topics(infra.kafka, [name], partitions=4)
    return name


def emit_pings(engine, topic, keys, per_key, *, request_id=None):
    """Emit `per_key` pings for each key, committed, interleaved across keys."""
    token = request_id_var.set(request_id)
    try:
        with Session(engine) as session, session.begin():
            for n in range(per_key):
                for key in keys:
                    emit(session, Ping(key, n), topic=topic)
    finally:
        request_id_var.reset(token)


def pending(engine):
    with engine.connect() as conn:
        return conn.scalar(
            sa.text("SELECT count(*) FROM outbox_events WHERE sent_at IS NULL")
        )


def drain(relay, engine):
    while relay.publish_batch():
        pass
    assert pending(engine) == 0


def test_rolled_back_emit_is_never_published_committed_one_always_is(infra, topic):
    engine = infra.engine("orders")
    with Session(engine) as session:
        session.begin()
        emit(session, Ping("rolled-back", 0), topic=topic)
        session.rollback()
    with Session(engine) as session, session.begin():
        committed = emit(session, Ping("committed", 0), topic=topic)
    relay = Relay(engine, infra.kafka)
    drain(relay, engine)
    relay.close()

    published = envelopes(read_topic(infra.kafka, topic))
    assert [e.key for e in published] == ["committed"]
    assert published[0].id == committed.id
    assert published[0].data == {"key_id": "committed", "n": 0, "fail": ""}


def test_emit_works_inside_a_prepared_two_phase_branch(infra, topic):
    engine = infra.engine("orders")
    with engine.connect() as conn:
        branch = conn.begin_twophase()
        emit(Session(bind=conn), Ping("two-phase", 0), topic=topic)
        branch.prepare()
        branch.commit()
    assert pending(engine) == 1


def test_an_idle_relay_wakes_on_commit_and_on_wake_relays_not_on_its_timer(
    infra, topic
):
    engine = infra.engine("orders")
    drain(Relay(engine, infra.kafka), engine)
    # Its polling alone would take a minute: only a notification can wake it.
    slow = RelayConfig(idle_interval=60.0, idle_interval_max=60.0)
    relay = Relay(engine, infra.kafka, config=slow)
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,))
    thread.start()
    try:
        wait_until(relay._listener.listening.is_set, 10)
        emit_pings(engine, topic, ["notified"], 1)
        wait_until(lambda: pending(engine) == 0, 10)
        # A two-phase branch cannot notify: its row waits for `wake_relays`.
        with engine.connect() as conn:
            branch = conn.begin_twophase()
            emit(Session(bind=conn), Ping("two-phase", 0), topic=topic)
            branch.prepare()
            branch.commit()
        assert pending(engine) == 1
        wake_relays(engine)
        wait_until(lambda: pending(engine) == 0, 10)
    finally:
        stop.set()
        relay.wake()
        thread.join(10)
    assert not thread.is_alive()
    assert [e.key for e in envelopes(read_topic(infra.kafka, topic))] == [
        "notified",
        "two-phase",
    ]


def test_message_is_keyed_by_entity_and_carries_request_id(infra, topic):
    engine = infra.engine("orders")
    emit_pings(engine, topic, ["k-1"], 1, request_id="req-123")
    relay = Relay(engine, infra.kafka)
    drain(relay, engine)
    relay.close()
    (record,) = read_topic(infra.kafka, topic)
    assert record.key == b"k-1"
    assert dict(record.headers)["event_type"] == b"test.ping"
    assert Envelope.from_json(record.value).request_id == "req-123"


def unsent(engine):
    """The rows not published yet, parked or not: `(key, n, refusals, parked)`."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT key, payload, refusals, parked_at IS NOT NULL"
                " FROM outbox_events WHERE sent_at IS NULL ORDER BY seq"
            )
        ).all()
    return [
        (key, Envelope.from_json(bytes(payload)).data["n"], refusals, parked)
        for key, payload, refusals, parked in rows
    ]


def parked_row(engine):
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT key, refusals, last_error, parked_at FROM outbox_events"
                " WHERE parked_at IS NOT NULL"
            )
        ).one()


def metric(name):
    return REGISTRY.get_sample_value(name) or 0.0


def test_a_row_the_broker_refuses_is_parked_and_its_key_flows_again(infra, topic):
    engine = infra.engine("orders")
    with Session(engine) as session, session.begin():  # oldest rows: one too large
        emit(session, Ping("poison", 0, fail="x" * 2_000_000), topic=topic)
        for n in range(1, 13):  # enough to fill the relay's scan window alone
            emit(session, Ping("poison", n), topic=topic)
    emit_pings(engine, topic, [f"k{n}" for n in range(10)], 3)
    config = RelayConfig(batch_size=5, max_refusals=3)  # scans the 10 oldest rows
    relay = Relay(engine, infra.kafka, config=config)
    parked_before = metric("outbox_parked_events_total")
    refused_before = metric("outbox_refused_total")

    for _ in range(6):  # the scan window holds the poison key only: nothing moves
        assert relay.publish_batch() == 0
        if unsent(engine)[0][3]:
            break
    assert unsent(engine)[0] == ("poison", 0, 3, True)
    assert len(unsent(engine)) == 12 + 30 + 1
    relay.housekeeping(force=True)
    assert metric("outbox_parked") == 1
    assert metric("outbox_pending") == 12 + 30

    for _ in range(50):
        if len(unsent(engine)) == 1:
            break
        relay.publish_batch()
    relay.refresh_metrics()
    relay.close()
    assert unsent(engine) == [("poison", 0, 3, True)]  # kept, with its error
    key, refusals, error, parked_at = parked_row(engine)
    assert error.startswith("MessageSizeTooLargeError")
    assert parked_at is not None
    assert metric("outbox_pending") == 0
    assert metric("outbox_oldest_age_seconds") == 0
    assert metric("outbox_parked") == 1
    assert metric("outbox_parked_events_total") - parked_before == 1
    assert metric("outbox_refused_total") - refused_before == 3

    published = envelopes(read_topic(infra.kafka, topic))
    by_key = collections.defaultdict(list)
    for envelope in published:
        by_key[envelope.key].append(envelope.data["n"])
    assert by_key.pop("poison") == list(range(1, 13))  # its later events, in order
    assert by_key == {f"k{n}": [0, 1, 2] for n in range(10)}


class BrokerRefusing:
    """A real producer, except that the broker refuses marked records after `send()`
    returned: their futures fail during `flush`, as a broker-side size limit does."""

    def __init__(self, producer):
        self.producer = producer
        self.waiting = []

    def send(self, topic, *, key, value, headers):
        if b"refused-by-broker" in value:
            future = Future()
            self.waiting.append(future)
            return future
        return self.producer.send(topic, key=key, value=value, headers=headers)

    def flush(self, timeout=None):
        self.producer.flush(timeout)
        for future in self.waiting:
            future.failure(MessageSizeTooLargeError("larger than message.max.bytes"))
        self.waiting.clear()

    def close(self, timeout=None):
        self.producer.close(timeout=timeout)


def test_a_refusal_that_arrives_after_send_parks_the_row_too(infra, topic):
    engine = infra.engine("orders")
    with Session(engine) as session, session.begin():
        emit(session, Ping("late", 0, fail="refused-by-broker"), topic=topic)
        emit(session, Ping("late", 1), topic=topic)
    emit_pings(engine, topic, ["other"], 3)
    relay = Relay(
        engine,
        infra.kafka,
        config=RelayConfig(max_refusals=2),
        producer_factory=lambda: BrokerRefusing(make_producer(infra.kafka)),
    )
    for _ in range(10):
        if len(unsent(engine)) == 1:
            break
        relay.publish_batch()
    relay.close()
    assert unsent(engine) == [("late", 0, 2, True)]
    assert "larger than message.max.bytes" in parked_row(engine).last_error
    published = {
        (e.key, e.data["n"]) for e in envelopes(read_topic(infra.kafka, topic))
    }
    assert published == {("late", 1), ("other", 0), ("other", 1), ("other", 2)}


def test_two_relays_keep_per_key_order(infra, topic):
    engine = infra.engine("orders")
    keys = [f"key-{i}" for i in range(40)]
    emit_pings(engine, topic, keys, 25)
    config = RelayConfig(batch_size=37, idle_interval=0.01)
    relays = [Relay(engine, infra.kafka, config=config) for _ in range(2)]
    stop = threading.Event()
    threads = [threading.Thread(target=r.run, args=(stop,)) for r in relays]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: pending(engine) == 0, 30)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)

    seen: dict[str, list[int]] = collections.defaultdict(list)
    for envelope in envelopes(read_topic(infra.kafka, topic)):
        seen[envelope.key].append(envelope.data["n"])
    assert set(seen) == set(keys)
    for key in keys:
        assert seen[key] == list(range(25)), key


def test_sent_rows_and_old_inbox_rows_are_pruned_after_their_retention(infra, topic):
    engine = infra.engine("orders")
    emit_pings(engine, topic, ["old", "new", "pending"], 1)
    relay = Relay(engine, infra.kafka)
    drain(relay, engine)
    relay.close()
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE outbox_events SET sent_at = now() - interval '2 days'"
                " WHERE key = 'old'"
            )
        )
        conn.execute(
            sa.text(
                "UPDATE outbox_events SET sent_at = NULL,"
                " created_at = now() - interval '9 days' WHERE key = 'pending'"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO inbox_events (consumer_group, event_id, topic, type,"
                " processed_at) VALUES ('g', gen_random_uuid(), 't', 'old',"
                " now() - interval '15 days'), ('g', gen_random_uuid(), 't', 'new',"
                " now() - interval '13 days')"
            )
        )
    with make_session_factory(engine).begin() as session:
        pruned = prune_messages(
            session,
            outbox_retention=dt.timedelta(days=1),
            inbox_retention=dt.timedelta(days=14),
        )
    assert pruned == (1, 1)
    with engine.connect() as conn:
        keys = conn.scalars(sa.text("SELECT key FROM outbox_events ORDER BY key"))
        assert keys.all() == ["new", "pending"], "a pending row is never pruned"
        assert conn.scalars(sa.text("SELECT type FROM inbox_events")).all() == ["new"]


@pytest.mark.usefixtures("effects_table")
def test_relay_killed_mid_batch_delivers_at_least_once_and_effects_once(
    infra, topic, tmp_path
):
    from chomik.messaging.consuming import Consumer

    engine = infra.engine("orders")
    keys = [f"k{i}" for i in range(20)]
    emit_pings(engine, topic, keys, 40)  # 800 events
    # A batch of 100 takes 3 s to send: the check before the kill (a broker query
    # per look) cannot outlast it, also on a loaded machine.
    env = {"DATABASE_URL": infra.urls["orders"], "KAFKA_BOOTSTRAP_SERVERS": infra.kafka,
           "TEST_SEND_DELAY": "0.03", "TEST_BATCH": "100"}  # fmt: skip

    def sent():
        with engine.connect() as conn:
            return conn.scalar(
                sa.text("SELECT count(*) FROM outbox_events WHERE sent_at IS NOT NULL")
            )

    def mid_batch():
        # Marked rows first, then the broker: 20 more there than marked is a batch
        # under way (read the other way round, a batch marked between the two
        # reads would pass for one).
        marked = sent()
        return marked > 0 and topic_size(infra.kafka, topic) > marked + 20

    relay = spawn("tests.chomik.worker_child", env, tmp_path / "relay1.log", "relay")
    try:
        # Kill once the broker holds messages whose rows are not marked sent yet.
        wait_until(mid_batch, 30, 0.02)
        relay.send_signal(signal.SIGKILL)
        relay.wait(10)
        in_broker, marked = topic_size(infra.kafka, topic), sent()
        assert in_broker > marked, "the kill did not land mid-batch"
    finally:
        if relay.poll() is None:
            relay.kill()
    relay = spawn("tests.chomik.worker_child", env, tmp_path / "relay2.log", "relay")
    try:
        wait_until(lambda: pending(engine) == 0, 60)
    finally:
        relay.send_signal(signal.SIGTERM)
        assert relay.wait(15) == 0

    published = envelopes(read_topic(infra.kafka, topic))
    assert len(published) > 800, "some events were published twice"
    assert {(e.key, e.data["n"]) for e in published} == {
        (k, n) for k in keys for n in range(40)
    }

    consumer = Consumer(
        group_id=f"test-{uuid.uuid4().hex[:6]}",
        bootstrap_servers=infra.kafka,
        sessions=make_session_factory(engine),
        consumers={Ping.type: record_effect},
        event_types={Ping.type: Ping},
        topics=[topic],
        consumer_options={"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000},
    )
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,))
    thread.start()
    try:
        with engine.connect() as conn:
            count = lambda: conn.scalar(sa.text("SELECT count(*) FROM test_effects"))  # noqa: E731
            wait_until(lambda: count() >= 800, 60)
    finally:
        stop.set()
        thread.join(15)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT key, n, count(*) FROM test_effects GROUP BY key, n")
        ).all()
    assert len(rows) == 800
    assert all(c == 1 for _, _, c in rows)


# kafka-python leaves the sockets of refused connections to the garbage collector, and
# its log records (kept by pytest) hold them: keep its logs out and collect in the test.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_broker_outage_backlog_drains_and_metrics_rise_and_fall(
    infra, tmp_path, caplog
):
    caplog.set_level(logging.CRITICAL, logger="kafka")
    engine = infra.engine("orders")
    broker = KafkaBroker(port=free_port(), log_path=tmp_path / "tansu.log")
    broker.start()
    topic = "test.outage"

    def fast_producer():
        return make_producer(broker.bootstrap_servers, max_block_ms=1000,
                             request_timeout_ms=1000, delivery_timeout_ms=2000)  # fmt: skip

    config = RelayConfig(backoff_base=0.1, backoff_max=0.5, housekeeping_interval=0.1,
                         flush_timeout=3.0)  # fmt: skip
    relay = Relay(
        engine, broker.bootstrap_servers, config=config, producer_factory=fast_producer
    )
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,))

    try:
        ensure_topics(broker.bootstrap_servers, [topic], partitions=2)
        thread.start()
        emit_pings(engine, topic, ["before"], 5)
        wait_until(lambda: pending(engine) == 0, 20)

        broker.stop()
        errors_before = metric("outbox_publish_errors_total")
        published_before = metric("outbox_published_total")
        emit_pings(engine, topic, [f"k{i}" for i in range(10)], 20)  # 200 events
        wait_until(lambda: metric("outbox_pending") >= 200, 10, 0.05)
        wait_until(
            lambda: metric("outbox_publish_errors_total") > errors_before, 20, 0.05
        )
        wait_until(lambda: metric("outbox_oldest_age_seconds") >= 1.0, 10, 0.05)
        assert pending(engine) == 200

        broker.start()
        wait_until(lambda: pending(engine) == 0, 30)
        wait_until(lambda: metric("outbox_pending") == 0, 5, 0.05)
        assert metric("outbox_oldest_age_seconds") == 0
        assert metric("outbox_published_total") - published_before >= 200

        published = envelopes(read_topic(broker.bootstrap_servers, topic))
        backlog = {(e.key, e.data["n"]) for e in published}
        assert backlog == {(f"k{i}", n) for i in range(10) for n in range(20)}
        with engine.connect() as conn:  # an outage is no refusal: nothing parked
            assert conn.execute(
                sa.text("SELECT max(refusals), count(parked_at) FROM outbox_events")
            ).one() == (0, 0)
    finally:
        stop.set()
        if thread.is_alive():
            thread.join(15)
        broker.stop()
        gc.collect()


def test_record_checksums_are_computed_in_c():
    # Without the crc32c package kafka-python computes each batch's CRC-32C in pure
    # Python: 36 us for one event, 3 ms for a batch of 100, on every send and fetch.
    from kafka.record import util
    from kafka.record._crc32c import crc as pure_python

    assert util._crc32c is not pure_python


def test_republish_makes_the_events_sent_since_a_moment_pending_again(
    infra, monkeypatch, capsys
):
    engine = infra.engine("orders")
    emit_pings(engine, "test.republish", ["a", "b"], 2)  # four events
    with engine.begin() as conn:  # two sent an hour ago, one just now, one parked
        conn.execute(
            sa.text(
                "UPDATE outbox_events SET sent_at = now() - interval '1 hour'"
                " WHERE seq IN (SELECT seq FROM outbox_events ORDER BY seq LIMIT 2)"
            )
        )
        conn.execute(
            sa.text(
                "UPDATE outbox_events SET sent_at = now(), parked_at ="
                " CASE WHEN seq = (SELECT max(seq) FROM outbox_events) THEN now() END"
                " WHERE sent_at IS NULL"
            )
        )
    assert republish(engine, 300) == 1  # the last five minutes

    assert pending(engine) == 1
    assert republish(infra.engine("txcoord"), 300) == 0  # no outbox there
    # The command does the same over the databases it is given.
    monkeypatch.setenv("ORDERS_DATABASE_URL", str(engine.url.render_as_string(False)))
    assert (
        cli.main(["outbox", "republish", "--since", "7200", "--database", "orders"])
        == 0
    )
    assert "orders: 2 event(s) to send again" in capsys.readouterr().out
    assert pending(engine) == 3  # never the parked one
    for bad in ("0", "-5", "nan", "1e12", "soon"):
        with pytest.raises(SystemExit):
            cli.main(["outbox", "republish", "--since", bad])
    assert "at most INBOX_RETENTION" in capsys.readouterr().err
