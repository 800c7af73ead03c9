"""The callback edges (no Flask here): check a signed callback, the event to queue.

The gateway proves the sender and the freshness of the message, then writes the raw
body to its outbox, from which its worker's relay puts it on the topic the payment
or delivery worker consumes. A message it queued before (the same signed body
again, within the tolerance window) is answered 202 and not queued again; the
consuming worker verifies the signature once more and keeps its own replay guard in
the transaction of the callback's effect.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from apps.gateway.errors import InvalidSignatureError
from apps.gateway.settings import GatewaySettings
from chomik.messaging import Envelope, Event
from chomik.messaging.kafka import envelope_of
from chomik.problems import BadRequestError, ValidationProblem
from chomik.signing import SignatureError, VerifiedSignature, split_secrets, verify
from chomik.web import unstorable_fields
from clients.events import BankCallbackReceived, CarrierCallbackReceived

MAX_CALLBACK_BYTES = 64 * 1024
MAX_ID_LENGTH = 200


@dataclass(frozen=True)
class CallbackSource:
    """One outside system that calls us back: its secrets and its event."""

    name: str
    secrets: tuple[str, ...]
    id_field: str
    event: Callable[..., Event]
    topic: str


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
    # It keys the outbox row (text): what PostgreSQL cannot store is refused.
    if errors := unstorable_fields(value, field):
        raise ValidationProblem(errors)
    return value
