"""An orders worker for the replica tests: `python -m tests.apps.orders.worker_child`.

The real worker (consumers, relay, the expiry job's handler and the kit's runner),
with the expiry job on a short interval and a short lease (`TEST_LEASE` seconds,
batches of `TEST_BATCH`), so a killed replica's rows come due again quickly.
"""

from __future__ import annotations

import datetime as dt
import os
import sys

from apps.orders.consumers import CONSUMERS
from apps.orders.jobs import expire_due_order
from apps.orders.models import Order
from apps.orders.settings import OrdersSettings
from chomik.jobs import claimed
from chomik.worker import Worker


def main() -> int:
    lease = dt.timedelta(seconds=float(os.environ.get("TEST_LEASE", "3")))
    batch = int(os.environ.get("TEST_BATCH", "40"))
    expiry = claimed(
        "expire_due_orders",
        Order,
        expire_due_order,
        seconds=1,
        lease=lease,
        batch=batch,
    )
    return Worker(
        "orders", OrdersSettings.from_env(), consumers=CONSUMERS, jobs=[expiry]
    ).run()


if __name__ == "__main__":
    sys.exit(main())
