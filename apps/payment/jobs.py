"""Scheduled jobs of the payment worker: `JOBS`, plus the ones that need the bank.

* `poll_pending_payments` runs on every replica through the kit's claimed-job
  runner: a run leases a batch of due PENDING payments and checks each at the
  bank; a replica killed mid-batch loses nothing (its rows come due again when
  the lease ends) and a result is applied once whoever gets it
  (`apply_bank_result`). `watch_expired_payments` does the same for the EXPIRED
  payments still watched for a late success, apart from the PENDING ones.
* `txcoord_recovery` runs on every replica (it is safe on several at once), at
  start and then periodically: in-doubt branches hold row locks.
* `prune_txcoord_decisions` runs on one replica at a time.
* `count_pending_payments` refreshes the PENDING gauges on every replica.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

import txcoord
from apps.payment import services
from apps.payment.metrics import PENDING, PENDING_OLDEST_AGE, RECOVERY_IN_DOUBT
from apps.payment.models import Payment, PaymentStatus
from apps.payment.services import TXCOORD_PREFIX, Ports
from apps.payment.settings import PaymentSettings
from chomik.jobs import Job, JobContext, claimed, exclusive

__all__ = ["JOBS", "TXCOORD_PREFIX", "payment_jobs", "run_recovery"]

# The payments the poller checks at the bank: pending, or expired and watched.
WATCHED = (PaymentStatus.PENDING, PaymentStatus.EXPIRED)

log = logging.getLogger(__name__)


def prune_decisions(session: Session, context: JobContext) -> int:
    """Delete 2PC decisions past their retention whose branches are all finished."""
    settings = cast(PaymentSettings, context.settings)
    participants = {
        "payment": sa.create_engine(settings.database_url, poolclass=NullPool),
        "orders": sa.create_engine(settings.orders_database_url, poolclass=NullPool),
    }
    log_engine = sa.create_engine(settings.txcoord_database_url, poolclass=NullPool)
    try:
        return txcoord.prune_decisions(
            participants,
            log_engine,
            prefix=TXCOORD_PREFIX,
            older_than=dt.timedelta(seconds=settings.txcoord_decision_retention),
        )
    finally:
        for engine in [*participants.values(), log_engine]:
            engine.dispose()


def count_pending_payments(context: JobContext) -> None:
    """Refresh `payment_pending` and the age of the oldest PENDING payment."""
    with context.sessions() as session:
        count, oldest = services.pending_payments(session)
    PENDING.set(count)
    PENDING_OLDEST_AGE.set(oldest.total_seconds())


JOBS: list[Job] = [
    exclusive("prune_txcoord_decisions", prune_decisions, seconds=3600, jitter=60),
    Job("count_pending_payments", count_pending_payments, seconds=15, jitter=2),
]


def run_recovery(ports: Ports) -> txcoord.RecoveryReport:
    """One pass of txcoord's recovery over payment's branches; in-doubt ones counted."""
    report = ports.coordinator.recovery().run_once()
    in_doubt = sum(report.in_doubt.values())
    if in_doubt:
        RECOVERY_IN_DOUBT.inc(in_doubt)
        log.warning("txcoord recovery: %d branches still in doubt: %s",
                    in_doubt, report.in_doubt)  # fmt: skip
    if report.resolved:
        log.info("txcoord recovery: committed %s, rolled back %s",
                 report.committed, report.rolled_back)  # fmt: skip
    return report


def payment_jobs(ports: Ports) -> list[Job]:
    """The jobs that call the bank or coordinate transactions, bound to `ports`."""
    settings = ports.settings

    def poll_pending_payment(session: Session, row: Any) -> dt.datetime | None:
        return services.poll_payment(ports, row)

    def recover(context: JobContext) -> txcoord.RecoveryReport:
        return run_recovery(ports)

    return [
        claimed(
            "poll_pending_payments", Payment, poll_pending_payment,
            # The lease outlasts a batch of bank calls; a row still in hand when it
            # ends may be checked by another replica too, which changes nothing twice.
            seconds=max(1, settings.payment_poll_interval // 3),
            lease=dt.timedelta(seconds=settings.payment_poll_lease),
            batch=50, jitter=1, where=[Payment.status == PaymentStatus.PENDING],
            idle_max=settings.payment_poll_interval,
            # Expired by this job, a payment stays due: the next job watches it.
            due_while=[Payment.status.in_(WATCHED)],
        ),
        # Apart, so that a backlog of expired payments never delays a PENDING one.
        claimed(
            "watch_expired_payments", Payment, poll_pending_payment,
            seconds=settings.payment_poll_interval,
            lease=dt.timedelta(seconds=settings.payment_poll_lease),
            batch=50, jitter=1, where=[Payment.status == PaymentStatus.EXPIRED],
            idle_max=settings.payment_poll_interval,
        ),
        Job("txcoord_recovery", recover, settings.txcoord_recovery_interval, 1),
    ]  # fmt: skip
