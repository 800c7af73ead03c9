"""The payment worker: the outbox relay, bank callbacks, the poller and recovery."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from apps.payment.consumers import consumers
from apps.payment.jobs import JOBS, payment_jobs, run_recovery
from apps.payment.services import Ports, build_ports
from apps.payment.settings import PaymentSettings
from chomik.worker import Worker
from clients.events import BANK_CALLBACKS
from txcoord import PhaseHook


class PaymentWorker(Worker):
    """A worker that finishes txcoord's in-doubt branches before it starts work."""

    def __init__(self, settings: PaymentSettings, ports: Ports) -> None:
        super().__init__(
            "payment",
            settings,
            consumers=consumers(ports),
            jobs=[*JOBS, *payment_jobs(ports)],
            topics=[BANK_CALLBACKS],
        )
        self.ports = ports

    def start(self) -> None:
        """Run one recovery pass, then the relay, consumer and jobs."""
        run_recovery(self.ports)
        super().start()


def crash_switch(path: Path) -> PhaseHook:
    """A txcoord phase hook that SIGKILLs this process where `path` says, once.

    The file names an injection point (`before_decision`, `after_decision`,
    `after_commit:orders`, …). The first process to reach that point renames
    the file away (so one process crashes, once) and dies there with SIGKILL,
    as a crash of the machine would end it. Tests only (`TXCOORD_CRASH_FILE`).
    """

    def on_phase(point: str, _tx_id: str) -> None:
        try:
            wanted = path.read_text().strip()
        except OSError:
            return
        if wanted != point:
            return
        try:
            path.rename(path.with_name(f"{path.name}.{os.getpid()}"))
        except OSError:
            return  # another process got there first
        os.kill(os.getpid(), signal.SIGKILL)

    return on_phase


def build_worker(
    settings: PaymentSettings | None = None, *, ports: Ports | None = None
) -> Worker:
    """Build the payment worker process (`chomik worker payment`)."""
    settings = settings or PaymentSettings.from_env()
    ports = ports or build_ports(settings, check_servers=True)
    if settings.txcoord_crash_file:
        ports.coordinator.on_phase = crash_switch(Path(settings.txcoord_crash_file))
    return PaymentWorker(settings, ports)
