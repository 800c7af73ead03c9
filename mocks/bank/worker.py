"""The bank worker: sends the signed callbacks (no Kafka: the bank is an outsider)."""

from __future__ import annotations

from chomik.worker import Worker
from mocks.bank.jobs import jobs
from mocks.bank.settings import BankSettings


def build_worker(settings: BankSettings | None = None) -> Worker:
    """Build the bank worker process (`chomik worker bank`)."""
    settings = settings or BankSettings.from_env()
    return Worker("bank", settings, jobs=jobs(settings), relay=False)
