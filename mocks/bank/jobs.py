"""The bank's scheduled jobs: sending the queued signed callbacks."""

from __future__ import annotations

from chomik.jobs import Job
from chomik.webhooks import callback_jobs
from mocks.bank.settings import BankSettings


def jobs(settings: BankSettings) -> list[Job]:
    """The bank worker's jobs, configured by its settings."""
    return callback_jobs(settings.signing_secret, settings.faults)
