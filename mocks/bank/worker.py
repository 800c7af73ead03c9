"""The bank worker: sends the signed callbacks (no Kafka: the bank is an outsider)."""

from __future__ import annotations

from chomik.worker import Worker
from mocks.bank.jobs import JOBS
from mocks.bank.settings import BankSettings


def build_worker(settings: BankSettings | None = None) -> Worker:
    """Build the bank worker process (`chomik worker bank`)."""
    return Worker("bank", settings or BankSettings.from_env(), jobs=JOBS, relay=False)
