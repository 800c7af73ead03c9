"""Messaging: Kafka plumbing, the transactional outbox and its relay, the consumer loop,
dead letters.

Apps import what they use from here: `from chomik.messaging import emit, Worker...`.
Modules: `kafka` (envelope, events, producers, topics; `kafka.dlq(topic)` names a
dead-letter topic), `outbox` (emit, relay, parking of refused rows), `consuming` (the
consumer loop and its outage/fault table), `dlq` (list, show and replay dead
letters: `chomik dlq`), `migrations` (the tables' Alembic operations).
"""

from chomik.messaging.consuming import (
    Consumer,
    Handler,
    HandlerKey,
    InboxEntry,
    owns_transaction,
    record_inbox,
)
from chomik.messaging.kafka import Envelope, Event, MalformedMessageError
from chomik.messaging.outbox import emit, install_messaging

__all__ = [
    "Consumer",
    "Envelope",
    "Event",
    "Handler",
    "HandlerKey",
    "InboxEntry",
    "MalformedMessageError",
    "emit",
    "install_messaging",
    "owns_transaction",
    "record_inbox",
]
