"""Leased jobs of the orders worker, on every replica: each claims due rows.

A claim (`claim_due`) leases a batch of due rows to this replica and commits at
once; each row is then handled in a transaction of its own, fenced by the claim
token: when the lease ran out and another replica took the row over, the effect
is rolled back. A replica killed mid-batch loses nothing: its rows come due
again when the lease ends, and `move_order`'s conditional UPDATE expires an
order once whoever gets there.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from typing import Any

from apps.orders import services
from apps.orders.models import Order, PlacementAttempt
from apps.orders.settings import OrdersSettings
from chomik.jobs.scheduling import JobContext, claim_due, complete_claim
from clients.storage import StorageClient

log = logging.getLogger(__name__)


class StaleClaimError(Exception):
    """The lease ran out and another replica owns the row: undo this effect."""


def _settings(context: JobContext) -> OrdersSettings:
    settings = context.settings
    if not isinstance(settings, OrdersSettings):
        raise TypeError("the orders jobs need OrdersSettings")
    return settings


def _claims(context: JobContext, table: type[Any]) -> list[Any]:
    settings = _settings(context)
    with context.sessions() as session:
        return claim_due(
            session,
            table,
            limit=settings.expiry_batch,
            lease=dt.timedelta(seconds=settings.expiry_lease),
        )


def expire_due_orders(context: JobContext) -> None:
    """Expire the unpaid orders past expires_at, each once, one transaction each."""
    while not context.stopping.is_set() and (rows := _claims(context, Order)):
        for row in rows:
            if context.stopping.is_set():
                return
            with contextlib.suppress(StaleClaimError), context.sessions.begin() as s:
                next_due = services.expire_order(s, order_id=row.id)
                if not complete_claim(
                    s, Order, row.id, row.claim_token, next_due=next_due
                ):
                    raise StaleClaimError(row.id)


def release_abandoned_placements(context: JobContext) -> None:
    """Release the stock of placements that reserved and never stored their order."""
    settings = _settings(context)
    storage = StorageClient(
        settings.storage_url,
        service_secret=settings.service_token_secret,
        caller="orders",
        timeout=settings.http_timeout,
    )
    try:
        release_abandoned(context, storage)
    finally:
        storage.close()


def release_abandoned(context: JobContext, storage: StorageClient) -> None:
    """The body of `release_abandoned_placements`, with the storage client given."""
    while not context.stopping.is_set() and (
        rows := _claims(context, PlacementAttempt)
    ):
        for row in rows:
            with contextlib.suppress(StaleClaimError), context.sessions.begin() as s:
                if not services.release_abandoned_placement(
                    s, order_id=row.order_id, claim=row.claim_token, storage=storage
                ):
                    raise StaleClaimError(row.order_id)
