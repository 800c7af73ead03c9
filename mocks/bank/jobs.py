"""The bank's scheduled jobs: sending the queued signed callbacks."""

from __future__ import annotations

from chomik.jobs import Job, JobContext
from chomik.webhooks import Sender
from mocks.bank.settings import BankSettings

# Senders by replica (one per process), so connections are pooled across runs.
_SENDERS: dict[str, Sender] = {}


def send_callbacks(context: JobContext) -> None:
    """Send every due callback (a long queue is drained until the worker stops)."""
    settings = context.settings
    assert isinstance(settings, BankSettings)
    sender = _SENDERS.get(context.replica_id)
    if sender is None:
        sender = Sender(
            context.sessions,
            secret=settings.signing_secret,
            defaults=settings.faults,
        )
        _SENDERS[context.replica_id] = sender
    sender.send_due(context.stopping.is_set)


JOBS = [Job("send_callbacks", send_callbacks, seconds=0.5)]
