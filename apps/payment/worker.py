"""The payment worker: the outbox relay, bank callbacks, the poller and recovery."""

from __future__ import annotations

from apps.payment.consumers import consumers
from apps.payment.jobs import JOBS, payment_jobs, run_recovery
from apps.payment.services import Ports, build_ports
from apps.payment.settings import PaymentSettings
from chomik.worker import Worker
from clients.events import BANK_CALLBACKS


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


def build_worker(
    settings: PaymentSettings | None = None, *, ports: Ports | None = None
) -> Worker:
    """Build the payment worker process (`chomik worker payment`)."""
    settings = settings or PaymentSettings.from_env()
    return PaymentWorker(settings, ports or build_ports(settings, check_servers=True))
