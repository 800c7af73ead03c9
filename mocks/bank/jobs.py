"""The bank's scheduled jobs: sending the queued signed callbacks."""

from __future__ import annotations

from chomik.jobs import Job
from chomik.settings import Settings
from chomik.webhooks import Faults, sender_job
from mocks.bank.settings import BankSettings


def _callback_config(settings: Settings) -> tuple[str, Faults]:
    assert isinstance(settings, BankSettings)
    return settings.signing_secret, settings.faults


send_callbacks = sender_job(_callback_config)

JOBS = [Job("send_callbacks", send_callbacks, seconds=0.5)]
