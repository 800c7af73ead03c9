"""A bank callback from `bank.callbacks`: verified again, then applied once.

The gateway checked the signature when the callback arrived; the worker checks it
again (the topic is not a trust boundary) as of the time the gateway queued it
(the envelope's `occurred_at`), so a consumer that lags behind its topic still
takes it. The replay guard and the inbox row are written in the payment branch of
the transaction that applies the result.
"""

from __future__ import annotations

import datetime as dt
import json
import logging

from apps.payment.metrics import CALLBACK_APPLY_SECONDS, RESULTS
from apps.payment.services.applying import BankResult, Guard, Outcome, apply_bank_result
from apps.payment.services.ports import Ports
from chomik.messaging.consuming import InboxEntry, record_inbox
from chomik.messaging.kafka import Envelope
from chomik.signing import SignatureError, split_secrets, verify
from clients.bank import BankCallback
from clients.events import BankCallbackReceived

log = logging.getLogger(__name__)

BAD_SIGNATURE = "bad_signature"
MALFORMED = "malformed"


def take_bank_callback(ports: Ports, envelope: Envelope, entry: InboxEntry) -> bool:
    """Verify and apply one queued bank callback; False if it was taken before."""
    event = BankCallbackReceived.from_data(envelope.data)
    settings = ports.settings
    try:
        verified = verify(
            event.signature,
            event.body.encode(),
            split_secrets(settings.bank_callback_secrets),
            tolerance=settings.signature_tolerance,
            now=envelope.occurred_at.timestamp(),
        )
    except SignatureError as exc:
        log.warning("bank callback %s refused: %s", envelope.id, exc)
        return _refuse(ports, entry, BAD_SIGNATURE)
    try:
        callback = BankCallback.from_json(json.loads(event.body))
    except (KeyError, ValueError, TypeError) as exc:
        log.warning("bank callback %s is not one: %r", envelope.id, exc)
        return _refuse(ports, entry, MALFORMED)
    outcome = apply_bank_result(
        ports,
        BankResult.of_callback(callback),
        source="callback",
        guard=Guard(entry, verified),
    )
    if outcome is Outcome.APPLIED:
        waited = dt.datetime.now(dt.UTC) - envelope.occurred_at
        CALLBACK_APPLY_SECONDS.observe(waited.total_seconds())
    return outcome is not Outcome.DUPLICATE


def _refuse(ports: Ports, entry: InboxEntry, outcome: str) -> bool:
    """Mark a callback that changes nothing as taken; False if it was before."""
    with ports.sessions.begin() as session:
        recorded = record_inbox(session, entry)
    RESULTS.labels("callback", outcome).inc()
    return recorded
