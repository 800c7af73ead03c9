"""The callback edges: signed calls from the bank and the carrier, queued on Kafka.

No token here: the HMAC signature is the authentication. The gateway refuses bad,
old and future signatures and answers a replay of a message it already queued with
202, without queuing it again; the consuming worker verifies again and applies its
own replay guard in the transaction of the callback's effect.
"""

from __future__ import annotations

from typing import Any

from flask import Response, g, request
from flask_smorest import Blueprint

from apps.gateway.callbacks import MAX_CALLBACK_BYTES, receive_callback
from apps.gateway.context import gateway
from apps.gateway.settings import GatewaySettings
from chomik.problems import ProblemSchema
from chomik.signing import HEADER, remember_signature
from chomik.web import db_session, read_body, settings_of, streams_body

blp = Blueprint(
    "callbacks",
    __name__,
    url_prefix="/callbacks",
    description="Signed callbacks from the bank and the carrier (no token: HMAC)",
)

SIGNATURE_PARAMETER = {
    "in": "header",
    "name": HEADER,
    "required": True,
    "description": 't=<unix seconds>,v1=<hex HMAC-SHA256 of "t." + body>; '
    "several v1 entries are accepted (secret rotation)",
    "schema": {"type": "string"},
}


def _body_of(id_field: str) -> dict[str, Any]:
    return {
        "required": True,
        "description": f"The sender's JSON object, signed as sent; needs `{id_field}`",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": [id_field],
                    "properties": {id_field: {"type": "string"}},
                    "additionalProperties": True,
                }
            }
        },
    }


def _documented(id_field: str) -> Any:
    """The answers every callback edge documents."""

    def decorate(view: Any) -> Any:
        for status, description in (
            (400, "The body is not a JSON object"),
            (401, "Missing, malformed, wrong, old or future signature"),
            (413, f"The body is over {MAX_CALLBACK_BYTES} bytes"),
            (422, f"The body has no `{id_field}`"),
            (503, "Not queued (the broker is away): retry after Retry-After"),
        ):
            view = blp.alt_response(
                status, schema=ProblemSchema, description=description
            )(view)
        view = blp.response(202, description="Queued: the broker acknowledged it")(view)
        return blp.doc(
            parameters=[SIGNATURE_PARAMETER], requestBody=_body_of(id_field)
        )(view)

    return decorate


def _accept(name: str) -> Response:
    """Verify the callback, publish it and wait for the ack, then answer 202.

    The signature is remembered in the request's transaction, which commits only
    after the broker's ack: a replay of a queued message is answered 202 and not
    published again, and a concurrent copy waits on the first's row and then sees
    it. A message that could not be queued (503) is not remembered, so the
    sender's retry goes through.
    """
    request.max_content_length = MAX_CALLBACK_BYTES
    read_body()  # past the limit: 413, not a body cut short
    state = gateway()
    source = state.callbacks[name]
    received = receive_callback(
        source,
        header=request.headers.get(HEADER),
        body=request.get_data(),
        tolerance=settings_of(GatewaySettings).signature_tolerance,
        request_id=g.get("request_id"),
    )
    signature = received.signature
    if remember_signature(
        db_session(), signature.replay_key, expires_at=signature.expires_at
    ):
        state.publisher.publish(received.envelope, source.topic)
    return Response(status=202)


@blp.route("/bank", methods=["POST"])
@streams_body
@_documented("transaction_id")
def bank() -> Response:
    """Receive a bank callback

    Signed with the bank's callback secret; answered 202 only once the callback
    is on the `bank.callbacks` topic, so a 503 (or no answer) means: send again.
    """
    return _accept("bank")


@blp.route("/carrier", methods=["POST"])
@streams_body
@_documented("shipment_id")
def carrier() -> Response:
    """Receive a carrier callback

    Signed with the carrier's callback secret; answered 202 only once the
    callback is on the `carrier.callbacks` topic, so a 503 means: send again.
    """
    return _accept("carrier")
