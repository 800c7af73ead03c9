"""Scheduled jobs of the orders worker: `JOBS` is the table the worker runs.

Both per-row jobs run on every replica through the kit's claimed-job runner: a
run leases a batch of due rows and handles each in a transaction of its own,
fenced by its claim. A replica killed mid-batch loses nothing: its rows come due
again when the lease ends, and `move_order`'s conditional UPDATE expires an order
once, whoever gets there.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from apps.orders import services
from apps.orders.metrics import ORDERS_BY_STATUS
from apps.orders.models import Order, PlacementAttempt
from chomik.jobs import Job, JobContext, claimed, exclusive

# Long enough for a whole batch; a row still in hand when it ends may be taken
# over by another replica, and then one of the two effects is undone.
LEASE = dt.timedelta(minutes=2)
ATTEMPT_RETENTION = dt.timedelta(days=1)


def expire_due_order(session: Session, row: Any) -> dt.datetime | None:
    """Expire one claimed order if it is still unpaid; return when it is due again."""
    return services.expire_order(session, order_id=row.id)


def release_abandoned_placement(session: Session, row: Any) -> None:
    """Give back the stock of a placement that never stored its order."""
    services.release_abandoned_placement(session, order_id=row.order_id)


def count_orders_by_status(context: JobContext) -> None:
    """Refresh the `orders_by_status` gauge from the database."""
    with context.sessions() as session:
        counts = services.count_orders_by_status(session)
    for status, count in counts.items():
        ORDERS_BY_STATUS.labels(status.value).set(count)


def prune_placement_attempts(session: Session, context: JobContext) -> int:
    """Delete handled placement attempts past their retention."""
    return services.prune_placement_attempts(session, older_than=ATTEMPT_RETENTION)


JOBS: list[Job] = [
    claimed(
        "expire_due_orders", Order, expire_due_order,
        seconds=5, lease=LEASE, batch=100, jitter=1, idle_max=30,
    ),
    claimed(
        "release_abandoned_placements", PlacementAttempt, release_abandoned_placement,
        seconds=30, lease=LEASE, jitter=5, idle_max=120,
    ),
    exclusive(
        "prune_placement_attempts", prune_placement_attempts, seconds=3600, jitter=60
    ),
    Job("count_orders_by_status", count_orders_by_status, seconds=30, jitter=5),
]  # fmt: skip
