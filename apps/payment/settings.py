"""Settings of the payment service."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from chomik.settings import Settings, embedded_database_url, env


@dataclass(frozen=True, kw_only=True)
class PaymentSettings(Settings):
    """The kit's settings plus payment's: the databases its 2PC writes and logs to."""

    APP: ClassVar[str] = "payment"

    orders_database_url: str = env(
        "ORDERS_DATABASE_URL", "", doc="the orders database, written through txcoord"
    )
    txcoord_database_url: str = env(
        "TXCOORD_DATABASE_URL", "", doc="txcoord's decision log database"
    )
    txcoord_decision_retention: int = env(
        "TXCOORD_DECISION_RETENTION",
        7 * 24 * 3600,
        doc="seconds a 2PC decision is kept once no branch of it is prepared "
        "(far above the transaction timeout)",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, database in (
            ("orders_database_url", "chomik_orders"),
            ("txcoord_database_url", "chomik_txcoord"),
        ):
            if not getattr(self, name):
                object.__setattr__(self, name, embedded_database_url(database))
