"""Messaging: Kafka plumbing, the transactional outbox and its relay, the consumer loop.

Apps import what they use from here: `from chomik.messaging import emit, Worker...`.
"""

from chomik.messaging.consuming import (
    Consumer,
    Handler,
    HandlerKey,
    InboxEntry,
    owns_transaction,
    record_inbox,
)
from chomik.messaging.kafka import Envelope, Event, MalformedMessageError, dlq
from chomik.messaging.outbox import emit, install_messaging

__all__ = [
    "Consumer",
    "Envelope",
    "Event",
    "Handler",
    "HandlerKey",
    "InboxEntry",
    "MalformedMessageError",
    "dlq",
    "emit",
    "install_messaging",
    "owns_transaction",
    "record_inbox",
]
