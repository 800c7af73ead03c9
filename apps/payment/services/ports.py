"""What payment works with outside its own database: the bank and txcoord."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from apps.payment.settings import PaymentSettings
from chomik.db import make_engine, make_session_factory
from clients.bank import BankClient
from txcoord import DEFAULT_PREFIX, Coordinator, PrometheusObserver

# The gid prefix of payment's coordinated transactions; recovery and pruning
# look for exactly these.
TXCOORD_PREFIX = DEFAULT_PREFIX


@dataclass(frozen=True)
class Ports:
    """The bank client and the coordinator over the payment and orders databases."""

    bank: BankClient
    coordinator: Coordinator
    settings: PaymentSettings
    sessions: sessionmaker[Session]  # the payment database, outside any branch

    @property
    def orders_engine(self) -> sa.Engine:
        """The orders database (read before a start, written only through txcoord)."""
        return self.coordinator.participants["orders"]

    @property
    def payment_engine(self) -> sa.Engine:
        """The payment database's engine of the coordinator's branches."""
        return self.coordinator.participants["payment"]


def build_ports(
    settings: PaymentSettings,
    *,
    bank: BankClient | None = None,
    check_servers: bool = False,
) -> Ports:
    """The bank client and the coordinator, from the settings.

    Nothing connects unless `check_servers` (a worker at start): a web app is built
    before gunicorn forks, and pooled connections must not cross a fork.
    """
    bank = bank or BankClient(
        settings.bank_url,
        merchant_token=settings.bank_merchant_token,
        merchant_account_id=uuid.UUID(settings.bank_merchant_account_id),
        timeout=settings.http_timeout,
    )
    coordinator = Coordinator(
        {
            "payment": make_engine(settings.database_url),
            "orders": make_engine(settings.orders_database_url),
        },
        log=make_engine(settings.txcoord_database_url, pool_size=2, max_overflow=8),
        prefix=TXCOORD_PREFIX,
        timeout=settings.txcoord_timeout,
        observer=PrometheusObserver(),
        check_server=check_servers,
    )
    return Ports(
        bank=bank,
        coordinator=coordinator,
        settings=settings,
        sessions=make_session_factory(coordinator.participants["payment"]),
    )
