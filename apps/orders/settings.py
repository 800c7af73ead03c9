"""Settings of the orders service."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from chomik.settings import Settings, env


@dataclass(frozen=True, kw_only=True)
class OrdersSettings(Settings):
    """The kit's settings plus the orders service's own fields."""

    APP: ClassVar[str] = "orders"

    order_ttl: int = env(
        "ORDER_TTL",
        900,
        doc="seconds an unpaid order holds its stock before it expires",
    )
    order_max_unpaid: int = env(
        "ORDER_MAX_UNPAID",
        20,
        doc="orders a buyer may have holding stock unpaid at once (awaiting or "
        "failing payment); one more is a 409 until one is paid, cancelled or expired",
    )
    storage_url: str = env(
        "STORAGE_URL", "http://127.0.0.1:17001", doc="storage service base URL"
    )
    delivery_url: str = env(
        "DELIVERY_URL", "http://127.0.0.1:17002", doc="delivery service base URL"
    )
