"""Kafka handlers of the payment worker: each calls one service function.

The bank callback handler owns its transaction: its inbox row is written in the
payment branch of the two-phase commit that applies the result
(`@owns_transaction`). It is keyed by type string so that it receives the
envelope, whose `occurred_at` the signature is verified as of.
"""

from __future__ import annotations

from apps.payment import services
from apps.payment.services import Ports
from chomik.messaging.consuming import (
    Handler,
    HandlerKey,
    InboxEntry,
    owns_transaction,
)
from chomik.messaging.kafka import Envelope
from clients.events import BankCallbackReceived


def consumers(ports: Ports) -> dict[HandlerKey, Handler]:
    """The `CONSUMERS` table of the payment worker, bound to `ports`."""

    @owns_transaction
    def take_bank_callback(entry: InboxEntry, envelope: Envelope) -> bool:
        return services.take_bank_callback(ports, envelope, entry)

    return {BankCallbackReceived.type: take_bank_callback}  # type: ignore[dict-item]
