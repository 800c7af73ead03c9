"""The callback edges: signed bank and carrier calls, queued on the real broker."""

from __future__ import annotations

import gc
import io
import json
import logging
import time
import uuid

import pytest

from apps.gateway.callbacks import MAX_CALLBACK_BYTES
from apps.gateway.settings import GatewaySettings
from chomik.infra import free_port
from chomik.messaging.kafka import Envelope, ensure_topics
from chomik.settings import SettingsError
from chomik.signing import sign
from clients.events import BANK_CALLBACKS, CARRIER_CALLBACKS
from tests.chomik.messaging_helpers import read_topic, topic_size

BANK_SECRET = "bank-test-secret-0123456789"
OLD_BANK_SECRET = "bank-old-secret-0123456789"
CARRIER_SECRET = "carrier-test-secret-0123456789"
TOLERANCE = 300
EDGES = {
    "bank": (BANK_CALLBACKS, "transaction_id", BANK_SECRET),
    "carrier": (CARRIER_CALLBACKS, "shipment_id", CARRIER_SECRET),
}


@pytest.fixture(scope="module", autouse=True)
def topics(infra):
    ensure_topics(infra.kafka, [BANK_CALLBACKS, CARRIER_CALLBACKS])


@pytest.fixture
def edge_app(make_gateway):
    """A gateway app factory whose callback producer is closed afterwards."""
    apps = []

    def build(**overrides):
        values = {
            "bank_callback_secrets": BANK_SECRET,
            "carrier_callback_secrets": CARRIER_SECRET,
            "signature_tolerance": TOLERANCE,
            **overrides,
        }
        app = make_gateway(**values)
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions["chomik.gateway"].publisher.close()


@pytest.fixture
def client(edge_app):
    return edge_app().test_client()


def callback_body(id_field: str, entity_id: str | None = None) -> bytes:
    document = {
        "event_id": str(uuid.uuid4()),
        id_field: entity_id or f"id-{uuid.uuid4().hex}",
        "status": "SUCCEEDED",
        "occurred_at": "2026-11-29T12:00:00+00:00",
    }
    return json.dumps(document).encode()


def post(client, name: str, body: bytes, signature: str | None):
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Signature"] = signature
    return client.post(f"/api/v1/callbacks/{name}", data=body, headers=headers)


def records_with_key(infra, topic: str, key: str):
    return [r for r in read_topic(infra.kafka, topic) if r.key == key.encode()]


@pytest.mark.parametrize("name", sorted(EDGES))
def test_a_signed_callback_is_on_its_topic_keyed_by_its_id_before_the_202(
    client, infra, name
):
    topic, id_field, secret = EDGES[name]
    entity_id = f"{name}-{uuid.uuid4().hex}"
    body = callback_body(id_field, entity_id)
    signature = sign(body, secret)

    response = post(client, name, body, signature)

    assert response.status_code == 202, response.get_json()
    [record] = records_with_key(infra, topic, entity_id)
    envelope = Envelope.from_json(record.value)
    assert envelope.type == f"{name}.callback"
    assert envelope.key == entity_id
    assert envelope.data == {
        id_field: entity_id,
        "body": body.decode(),
        "signature": signature,
        "timestamp": signature.split(",")[0].removeprefix("t="),
    }
    assert envelope.request_id == response.headers["X-Request-Id"]


def test_a_callback_signed_with_the_old_secret_passes_while_both_are_set(
    edge_app, infra
):
    rotating = edge_app(
        bank_callback_secrets=f"{BANK_SECRET},{OLD_BANK_SECRET}"
    ).test_client()
    rotated = edge_app(bank_callback_secrets=BANK_SECRET).test_client()
    entity_id = f"rotated-{uuid.uuid4().hex}"
    body = callback_body("transaction_id", entity_id)
    signature = sign(body, OLD_BANK_SECRET)

    assert post(rotating, "bank", body, signature).status_code == 202
    refused = post(rotated, "bank", body, signature)

    assert refused.status_code == 401
    assert len(records_with_key(infra, BANK_CALLBACKS, entity_id)) == 1


def bad_signatures(body: bytes) -> dict[str, str | None]:
    now = int(time.time())
    good = sign(body, BANK_SECRET, now=now)
    return {
        "missing": None,
        "malformed": "t=yesterday,v1=abc",
        "wrong secret": sign(body, CARRIER_SECRET, now=now),
        "tampered body": sign(body + b" ", BANK_SECRET, now=now),
        "old": sign(body, BANK_SECRET, now=now - TOLERANCE - 60),
        "future": sign(body, BANK_SECRET, now=now + TOLERANCE + 60),
        "timestamp moved": good.replace(f"t={now}", f"t={now + 1}"),
    }


def test_bad_old_future_or_malformed_signatures_are_401_and_publish_nothing(
    client, infra
):
    body = callback_body("transaction_id")
    before = topic_size(infra.kafka, BANK_CALLBACKS)

    for case, signature in bad_signatures(body).items():
        response = post(client, "bank", body, signature)
        assert response.status_code == 401, case
        assert response.mimetype == "application/problem+json"
        assert response.get_json()["type"] == "invalid-signature", case

    assert topic_size(infra.kafka, BANK_CALLBACKS) == before


def test_a_bank_signature_does_not_open_the_carrier_edge(client, infra):
    body = callback_body("shipment_id")
    before = topic_size(infra.kafka, CARRIER_CALLBACKS)

    response = post(client, "carrier", body, sign(body, BANK_SECRET))

    assert response.status_code == 401
    assert topic_size(infra.kafka, CARRIER_CALLBACKS) == before


def test_the_signature_is_checked_before_the_body_is_read_as_json(client):
    response = post(client, "bank", b"not json", "t=1,v1=" + "0" * 64)

    assert response.status_code == 401
    assert response.get_json()["type"] == "invalid-signature"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"not json", 400),
        (b"\xff\xfe", 400),
        (b"[1, 2]", 400),
        (b"[" * 5000 + b"]" * 5000, 400),
        (b'{"status": "SUCCEEDED"}', 422),
        (b'{"transaction_id": 42}', 422),
        (b'{"transaction_id": ""}', 422),
        (b'{"transaction_id": "\\u0000x", "bad": "\\u0000"}', 202),
    ],
)
def test_a_signed_body_must_be_a_json_object_with_the_id(client, infra, body, status):
    before = topic_size(infra.kafka, BANK_CALLBACKS)

    response = post(client, "bank", body, sign(body, BANK_SECRET))

    assert response.status_code == status, response.get_json()
    published = topic_size(infra.kafka, BANK_CALLBACKS) - before
    assert published == (1 if status == 202 else 0)


def test_a_body_over_the_limit_is_refused_unread(client, infra):
    body = callback_body("transaction_id") + b" " * MAX_CALLBACK_BYTES

    response = post(client, "bank", body, sign(body, BANK_SECRET))

    assert response.status_code == 413
    assert response.get_json()["type"] == "payload-too-large"


def post_chunked(client, body: bytes):
    """A signed bank callback sent without a length (Transfer-Encoding: chunked)."""
    return client.post(
        "/api/v1/callbacks/bank",
        input_stream=io.BytesIO(body),
        headers={
            "Content-Type": "application/json",
            "Transfer-Encoding": "chunked",
            "X-Signature": sign(body, BANK_SECRET),
        },
        environ_overrides={"wsgi.input_terminated": True},
    )


def test_a_chunked_body_over_the_limit_is_413_not_a_body_cut_short(client, infra):
    # Without a length werkzeug would stop reading at the limit, silently, and the
    # signature would be checked on what it read: a 401 for the sender's mistake.
    response = post_chunked(
        client, callback_body("transaction_id") + b" " * MAX_CALLBACK_BYTES
    )
    assert response.status_code == 413, response.get_data(as_text=True)
    assert response.get_json()["type"] == "payload-too-large"


def test_a_chunked_callback_within_the_limit_is_accepted(client, infra):
    response = post_chunked(client, callback_body("transaction_id"))
    assert response.status_code == 202, response.get_data(as_text=True)


# kafka-python leaves the sockets of a producer that never bootstrapped unclosed.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_a_callback_that_cannot_be_queued_is_503_with_retry_after(edge_app, caplog):
    caplog.set_level(logging.CRITICAL, logger="kafka")
    nobody = f"127.0.0.1:{free_port()}"
    client = edge_app(
        kafka_bootstrap_servers=nobody, callback_publish_timeout=1.0
    ).test_client()
    body = callback_body("transaction_id")

    started = time.monotonic()
    response = post(client, "bank", body, sign(body, BANK_SECRET))

    assert response.status_code == 503
    assert response.get_json()["type"] == "unavailable"
    assert int(response.headers["Retry-After"]) > 0
    assert time.monotonic() - started < 10
    gc.collect()  # the leaked sockets are closed here, under this test's filter


def test_a_producer_that_fails_to_close_still_gives_the_503():
    from kafka.errors import KafkaTimeoutError

    from apps.gateway.callbacks import CallbackPublisher
    from apps.gateway.errors import NotQueuedError
    from chomik.messaging.kafka import Envelope

    class Failing:  # as kafka-python's producer does after its broker died
        def send(self, *args, **kwargs):
            raise KafkaTimeoutError("Failed to update metadata")

        def close(self, timeout=None):
            raise KafkaTimeoutError("Timeout waiting for future")

    publisher = CallbackPublisher("nowhere:9092", timeout=1.0, factory=Failing)
    envelope = Envelope.from_json(
        b'{"id": "5c7f0d5e-1c2b-4f0e-9a57-2f9a4c1e0b6d", "type": "t", "key": "k",'
        b' "occurred_at": "2026-12-01T00:00:00+00:00", "data": {}}'
    )
    with pytest.raises(NotQueuedError):
        publisher.publish(envelope, BANK_CALLBACKS)
    with pytest.raises(NotQueuedError):  # a new producer is made for the next one
        publisher.publish(envelope, BANK_CALLBACKS)


@pytest.mark.parametrize("name", sorted(EDGES))
def test_a_replay_of_a_queued_callback_is_202_and_not_queued_again(client, infra, name):
    topic, id_field, secret = EDGES[name]
    entity_id = f"replayed-{uuid.uuid4().hex}"
    body = callback_body(id_field, entity_id)
    signature = sign(body, secret)

    assert post(client, name, body, signature).status_code == 202
    assert post(client, name, body, signature).status_code == 202
    assert len(records_with_key(infra, topic, entity_id)) == 1
    # The same body signed anew (a sender's resend) is queued: the worker dedupes it.
    resent = sign(body, secret, now=time.time() + 1)
    assert post(client, name, body, resent).status_code == 202
    assert len(records_with_key(infra, topic, entity_id)) == 2


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_a_callback_that_was_not_queued_goes_through_when_sent_again(
    edge_app, infra, caplog
):
    caplog.set_level(logging.CRITICAL, logger="kafka")
    down = edge_app(
        kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
        callback_publish_timeout=1.0,
    ).test_client()
    up = edge_app().test_client()
    entity_id = f"retried-{uuid.uuid4().hex}"
    body = callback_body("transaction_id", entity_id)
    signature = sign(body, BANK_SECRET)

    assert post(down, "bank", body, signature).status_code == 503
    assert post(up, "bank", body, signature).status_code == 202
    assert len(records_with_key(infra, BANK_CALLBACKS, entity_id)) == 1
    gc.collect()


def test_the_callback_edges_are_in_the_public_openapi_document(client):
    paths = client.get("/openapi.json").get_json()["paths"]

    for name, (_, id_field, _) in EDGES.items():
        operation = paths[f"/api/v1/callbacks/{name}"]["post"]
        assert "security" not in operation
        assert [p["name"] for p in operation["parameters"]] == ["X-Signature"]
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        assert schema["required"] == [id_field]
        assert {"202", "401", "503"} <= set(operation["responses"])


REAL = {
    "ENVIRONMENT": "production",
    "SERVICE_TOKEN_SECRET": "a-real-secret-of-the-deployment-0123456789",
    "BANK_CALLBACK_SECRETS": "a-real-bank-secret-0123456789",
    "CARRIER_CALLBACK_SECRETS": "a-real-carrier-secret-0123456789",
    "DATABASE_URL": "postgresql+psycopg2://chomik@db.example/chomik_gateway",
    "METRICS_PORT": "9100",
}


@pytest.mark.parametrize(
    "variable", ["BANK_CALLBACK_SECRETS", "CARRIER_CALLBACK_SECRETS"]
)
def test_production_refuses_a_callback_secret_left_at_its_default(variable):
    environ = {key: value for key, value in REAL.items() if key != variable}

    with pytest.raises(SettingsError, match=variable):
        GatewaySettings.from_env(environ)
    assert (
        GatewaySettings.from_env(REAL).bank_callback_secrets
        == REAL["BANK_CALLBACK_SECRETS"]
    )
