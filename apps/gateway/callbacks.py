"""The callback edges (no Flask here): check a signed callback, queue it on Kafka.

The gateway proves the sender and the freshness of the message, then hands the raw
body on to the topic its worker consumes. A message it queued before (the same
signed body again, within the tolerance window) is answered 202 and not queued
again; the worker verifies the signature once more and keeps its own replay guard
in the transaction of the callback's effect.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from apps.gateway.errors import InvalidSignatureError, NotQueuedError
from apps.gateway.settings import GatewaySettings
from chomik.messaging import Envelope, Event
from chomik.messaging.kafka import envelope_of, make_producer
from chomik.problems import BadRequestError, ValidationProblem
from chomik.signing import SignatureError, VerifiedSignature, split_secrets, verify
from clients.events import BankCallbackReceived, CarrierCallbackReceived

log = logging.getLogger(__name__)

MAX_CALLBACK_BYTES = 64 * 1024
MAX_ID_LENGTH = 200
RETRY_AFTER = 5


@dataclass(frozen=True)
class CallbackSource:
    """One outside system that calls us back: its secrets and its event."""

    name: str
    secrets: tuple[str, ...]
    id_field: str
    event: Callable[..., Event]
    topic: str


class CallbackPublisher:
    """The process's Kafka producer for callbacks, made on first use.

    Made lazily so that a gunicorn worker builds its own after the fork, and made
    again after a failure, so a broker that comes back is found again.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        timeout: float,
        factory: Callable[[], KafkaProducer] | None = None,
    ) -> None:
        self.timeout = timeout
        wait_ms = int(timeout * 1000)
        # Every wait bounded by the edge's timeout, the first bootstrap included
        # (30 s by default): the sender is waiting for our answer.
        self._factory = factory or (
            lambda: make_producer(
                bootstrap_servers,
                bootstrap_timeout_ms=wait_ms,
                max_block_ms=wait_ms,
                request_timeout_ms=wait_ms,
                delivery_timeout_ms=wait_ms + 1000,
            )
        )
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()

    def publish(self, envelope: Envelope, topic: str) -> None:
        """Send one envelope and wait for the broker's ack; `NotQueuedError` if not."""
        try:
            producer = self._get()
            future = producer.send(
                topic, key=envelope.key.encode(), value=envelope.to_json(),
                headers=[("event_type", envelope.type.encode())],
            )  # fmt: skip
            future.get(timeout=self.timeout)
        except KafkaError as exc:
            log.warning("callback %s not queued on %s: %r", envelope.id, topic, exc)
            self.close()
            raise NotQueuedError(
                "The callback could not be queued: try again later",
                retry_after=RETRY_AFTER,
            ) from exc

    def _get(self) -> KafkaProducer:
        with self._lock:
            if self._producer is None:
                self._producer = self._factory()
            return self._producer

    def close(self) -> None:
        """Close the producer, if one was made."""
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=0)
            except KafkaError as exc:  # it did not stop in time: the 503 still holds
                log.warning("callback producer not closed: %r", exc)


def callback_sources(settings: GatewaySettings) -> dict[str, CallbackSource]:
    """The outside systems whose callbacks the gateway accepts, by name."""
    return {
        "bank": CallbackSource(
            "bank",
            split_secrets(settings.bank_callback_secrets),
            "transaction_id",
            BankCallbackReceived,
            BankCallbackReceived.topic,
        ),
        "carrier": CallbackSource(
            "carrier",
            split_secrets(settings.carrier_callback_secrets),
            "shipment_id",
            CarrierCallbackReceived,
            CarrierCallbackReceived.topic,
        ),
    }


@dataclass(frozen=True)
class ReceivedCallback:
    """A callback whose signature and body passed: what to publish, what to remember."""

    envelope: Envelope
    signature: VerifiedSignature


def receive_callback(
    source: CallbackSource,
    *,
    header: str | None,
    body: bytes,
    tolerance: int,
    request_id: str | None,
) -> ReceivedCallback:
    """Check a callback's signature and body; the envelope to publish."""
    try:
        verified = verify(header, body, source.secrets, tolerance=tolerance)
    except SignatureError as exc:
        raise InvalidSignatureError(str(exc)) from exc
    entity_id = _entity_id(_json_object(body), source.id_field)
    event = source.event(
        entity_id,
        body=body.decode(),
        signature=header,
        timestamp=str(verified.timestamp),
    )
    return ReceivedCallback(envelope_of(event, request_id=request_id), verified)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        text = body.decode()
        document = json.loads(text)
    # Deep nesting and huge integers fail as RecursionError and ValueError.
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadRequestError("The body is not UTF-8 JSON") from exc
    if not isinstance(document, dict):
        raise BadRequestError("The body is not a JSON object")
    return document


def _entity_id(document: dict[str, Any], field: str) -> str:
    value = document.get(field)
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_LENGTH:
        raise ValidationProblem(
            {field: [f"Required: a string of 1 to {MAX_ID_LENGTH} characters"]}
        )
    return value
