"""Business metrics of the orders service."""

from __future__ import annotations

from chomik.metrics import gauge

ORDERS_BY_STATUS = gauge(
    "orders_by_status",
    "Orders in each status (refreshed by every orders worker replica)",
    ["status"],
    aggregate="livemax",
)
