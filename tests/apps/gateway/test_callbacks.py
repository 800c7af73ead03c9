"""The callback edges: signed bank and carrier calls, queued in the gateway's outbox."""

from __future__ import annotations

import io
import json
import time
import uuid

import pytest
import sqlalchemy as sa

from apps.gateway.callbacks import MAX_CALLBACK_BYTES
from apps.gateway.settings import GatewaySettings
from chomik.infra import free_port
from chomik.messaging.kafka import Envelope
from chomik.settings import SettingsError
from chomik.signing import sign
from clients.events import BANK_CALLBACKS, CARRIER_CALLBACKS

BANK_SECRET = "bank-test-secret-0123456789"
OLD_BANK_SECRET = "bank-old-secret-0123456789"
CARRIER_SECRET = "carrier-test-secret-0123456789"
TOLERANCE = 300
EDGES = {
    "bank": (BANK_CALLBACKS, "transaction_id", BANK_SECRET),
    "carrier": (CARRIER_CALLBACKS, "shipment_id", CARRIER_SECRET),
}


@pytest.fixture
def edge_app(make_gateway):
    """A gateway app factory with both edges' secrets."""

    def build(**overrides):
        values = {
            "bank_callback_secrets": BANK_SECRET,
            "carrier_callback_secrets": CARRIER_SECRET,
            "signature_tolerance": TOLERANCE,
            **overrides,
        }
        return make_gateway(**values)

    return build


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


def queued(dbs, topic: str, key: str | None = None) -> list[Envelope]:
    """What the edges wrote to the gateway's outbox for `topic` (and `key`)."""
    rows = dbs.connection("gateway").execute(
        sa.text(
            "SELECT payload FROM outbox_events WHERE topic = :topic"
            " AND (CAST(:key AS text) IS NULL OR key = :key) ORDER BY seq"
        ),
        {"topic": topic, "key": key},
    )
    return [Envelope.from_json(bytes(payload)) for (payload,) in rows]


@pytest.mark.parametrize("name", sorted(EDGES))
def test_a_signed_callback_is_queued_for_its_topic_keyed_by_its_id_before_the_202(
    client, dbs, name
):
    topic, id_field, secret = EDGES[name]
    entity_id = f"{name}-{uuid.uuid4().hex}"
    body = callback_body(id_field, entity_id)
    signature = sign(body, secret)

    response = post(client, name, body, signature)

    assert response.status_code == 202, response.get_json()
    [envelope] = queued(dbs, topic, entity_id)
    assert envelope.type == f"{name}.callback"
    assert envelope.key == entity_id
    assert envelope.data == {
        id_field: entity_id,
        "body": body.decode(),
        "signature": signature,
        "timestamp": signature.split(",")[0].removeprefix("t="),
    }
    assert envelope.request_id == response.headers["X-Request-Id"]


def test_a_callback_signed_with_the_old_secret_passes_while_both_are_set(edge_app, dbs):
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
    assert len(queued(dbs, BANK_CALLBACKS, entity_id)) == 1


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
    client, dbs
):
    body = callback_body("transaction_id")
    before = len(queued(dbs, BANK_CALLBACKS))

    for case, signature in bad_signatures(body).items():
        response = post(client, "bank", body, signature)
        assert response.status_code == 401, case
        assert response.mimetype == "application/problem+json"
        assert response.get_json()["type"] == "invalid-signature", case

    assert len(queued(dbs, BANK_CALLBACKS)) == before


def test_a_bank_signature_does_not_open_the_carrier_edge(client, dbs):
    body = callback_body("shipment_id")
    before = len(queued(dbs, CARRIER_CALLBACKS))

    response = post(client, "carrier", body, sign(body, BANK_SECRET))

    assert response.status_code == 401
    assert len(queued(dbs, CARRIER_CALLBACKS)) == before


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
        (b'{"transaction_id": "x", "bad": "\\u0000"}', 202),
        (b'{"transaction_id": "\\u0000x"}', 422),
        (b'{"transaction_id": "\\ud800x"}', 422),
    ],
)
def test_a_signed_body_must_be_a_json_object_with_the_id(client, dbs, body, status):
    before = len(queued(dbs, BANK_CALLBACKS))

    response = post(client, "bank", body, sign(body, BANK_SECRET))

    assert response.status_code == status, response.get_json()
    published = len(queued(dbs, BANK_CALLBACKS)) - before
    assert published == (1 if status == 202 else 0)


def test_a_body_over_the_limit_is_refused_unread(client, dbs):
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


def test_a_chunked_body_over_the_limit_is_413_not_a_body_cut_short(client, dbs):
    # Without a length werkzeug would stop reading at the limit, silently, and the
    # signature would be checked on what it read: a 401 for the sender's mistake.
    response = post_chunked(
        client, callback_body("transaction_id") + b" " * MAX_CALLBACK_BYTES
    )
    assert response.status_code == 413, response.get_data(as_text=True)
    assert response.get_json()["type"] == "payload-too-large"


def test_a_chunked_callback_within_the_limit_is_accepted(client, dbs):
    response = post_chunked(client, callback_body("transaction_id"))
    assert response.status_code == 202, response.get_data(as_text=True)


def test_a_callback_is_accepted_with_no_broker_at_all(edge_app, dbs):
    # The edge never talks to Kafka: the gateway worker's relay waits out a broker
    # outage; before, the edge answered 503 until the broker came back.
    client = edge_app(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}").test_client()
    entity_id = f"no-broker-{uuid.uuid4().hex}"
    body = callback_body("transaction_id", entity_id)

    started = time.monotonic()
    response = post(client, "bank", body, sign(body, BANK_SECRET))

    assert response.status_code == 202
    assert time.monotonic() - started < 2
    assert len(queued(dbs, BANK_CALLBACKS, entity_id)) == 1


@pytest.mark.parametrize("name", sorted(EDGES))
def test_a_replay_of_a_queued_callback_is_202_and_not_queued_again(client, dbs, name):
    topic, id_field, secret = EDGES[name]
    entity_id = f"replayed-{uuid.uuid4().hex}"
    body = callback_body(id_field, entity_id)
    signature = sign(body, secret)

    assert post(client, name, body, signature).status_code == 202
    assert post(client, name, body, signature).status_code == 202
    assert len(queued(dbs, topic, entity_id)) == 1
    # The same body signed anew (a sender's resend) is queued: the worker dedupes it.
    resent = sign(body, secret, now=time.time() + 1)
    assert post(client, name, body, resent).status_code == 202
    assert len(queued(dbs, topic, entity_id)) == 2


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
