"""The embedded infrastructure the launcher and the tests run on."""

import uuid

from kafka import KafkaConsumer, KafkaProducer


def test_embedded_postgres_accepts_prepare_transaction(infra):
    gid = f"chomik-test-{uuid.uuid4().hex}"
    raw = infra.engine("orders").raw_connection()
    try:
        raw.autocommit = True
        cur = raw.cursor()
        cur.execute("SHOW max_prepared_transactions")
        assert int(cur.fetchone()[0]) >= 64
        cur.execute("BEGIN")
        cur.execute("SELECT 1")
        cur.execute(f"PREPARE TRANSACTION '{gid}'")
        cur.execute("SELECT count(*) FROM pg_prepared_xacts WHERE gid = %s", (gid,))
        assert cur.fetchone()[0] == 1
        cur.execute(f"ROLLBACK PREPARED '{gid}'")
        cur.execute("SELECT count(*) FROM pg_prepared_xacts WHERE gid = %s", (gid,))
        assert cur.fetchone()[0] == 0
    finally:
        raw.close()


def test_embedded_broker_round_trips_a_message(infra):
    topic = f"test.roundtrip.{uuid.uuid4().hex[:8]}"
    producer = KafkaProducer(bootstrap_servers=infra.kafka, acks="all")
    producer.send(topic, key=b"k", value=b"hello").get(timeout=10)
    producer.close()
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=infra.kafka,
        group_id=f"g-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        consumer_timeout_ms=15000,
    )
    try:
        values = [m.value for m in consumer]
    finally:
        consumer.close()
    assert values[:1] == [b"hello"]
