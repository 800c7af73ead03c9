"""Business metrics of the orders service."""

from __future__ import annotations

from chomik.metrics import gauge, histogram

ORDERS_BY_STATUS = gauge(
    "orders_by_status",
    "Orders in each status (refreshed by every orders worker replica)",
    ["status"],
    aggregate="livemax",
)
PLACEMENT_SECONDS = histogram(
    "order_placement_seconds",
    "Time to answer a placement, by outcome (placed, replayed, insufficient_stock, "
    "refused); the count of `placed` is the orders placed",
    ["outcome"],
    known=("placed", "replayed", "insufficient_stock", "refused"),
)
