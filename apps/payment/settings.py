"""Settings of the payment service."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from chomik.settings import Settings, SettingsError, embedded_database_url, env

# The bank mock's development merchant and callback secret (mocks/bank/settings.py),
# refused in production like every secret left at its default.
DEV_BANK_MERCHANT_TOKEN = "dev-merchant-token"
DEV_BANK_MERCHANT_ACCOUNT = "00000000-0000-4000-8000-00000000b001"
DEV_BANK_CALLBACK_SECRET = "dev-only-bank-callback-secret-change-me"


@dataclass(frozen=True, kw_only=True)
class PaymentSettings(Settings):
    """The kit's settings plus payment's: its 2PC databases, the bank, the poller."""

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

    bank_url: str = env(
        "BANK_URL", "http://127.0.0.1:17006", doc="the bank's API (the bank mock's)"
    )
    bank_merchant_token: str = env(
        "BANK_MERCHANT_TOKEN",
        DEV_BANK_MERCHANT_TOKEN,
        secret=True,
        doc="payment's bearer token as a merchant of the bank",
    )
    bank_merchant_account_id: str = env(
        "BANK_MERCHANT_ACCOUNT_ID",
        DEV_BANK_MERCHANT_ACCOUNT,
        doc="the merchant account payments are paid into",
    )
    bank_callback_url: str = env(
        "BANK_CALLBACK_URL",
        "http://127.0.0.1:17000/api/v1/callbacks/bank",
        doc="where the bank sends its signed callbacks (the gateway's bank edge)",
    )
    bank_callback_secrets: str = env(
        "BANK_CALLBACK_SECRETS",
        DEV_BANK_CALLBACK_SECRET,
        secret=True,
        doc="HMAC keys of bank callbacks, comma-separated (the gateway's, verified "
        "again by the payment worker)",
    )
    payment_poll_after: int = env(
        "PAYMENT_POLL_AFTER",
        30,
        doc="seconds a payment stays PENDING before the poller asks the bank",
    )
    payment_poll_interval: int = env(
        "PAYMENT_POLL_INTERVAL",
        30,
        doc="seconds between the poller's checks of one PENDING payment",
    )
    payment_poll_lease: int = env(
        "PAYMENT_POLL_LEASE",
        120,
        doc="seconds a poller replica holds the payments it claimed (a whole batch "
        "of bank calls); a replica that dies leaves them due again after it",
    )
    payment_ttl: int = env(
        "PAYMENT_TTL",
        600,
        doc="seconds a payment the bank has not settled stays PENDING before it "
        "expires (its order may then be paid again or expire)",
    )
    payment_late_watch: int = env(
        "PAYMENT_LATE_WATCH",
        7 * 24 * 3600,
        doc="seconds the poller still checks an EXPIRED payment's bank transaction, "
        "which the buyer may yet pay: a success found is refunded",
    )
    txcoord_timeout: float = env(
        "TXCOORD_TIMEOUT",
        60.0,
        doc="seconds after which recovery rolls back an undecided prepared branch",
    )
    txcoord_recovery_interval: int = env(
        "TXCOORD_RECOVERY_INTERVAL",
        30,
        doc="seconds between runs of txcoord's recovery on each payment worker",
    )
    txcoord_crash_file: str = env(
        "TXCOORD_CRASH_FILE",
        "",
        doc="tests only (refused in production): a worker that finds this file "
        "naming a txcoord phase (`after_decision`, …) removes it and SIGKILLs "
        "itself there",
    )

    def __post_init__(self) -> None:
        if self.environment == "production" and self.txcoord_crash_file:
            raise SettingsError(
                "TXCOORD_CRASH_FILE is a test's crash switch: unset it in production"
            )
        super().__post_init__()
        for name, database in (
            ("orders_database_url", "chomik_orders"),
            ("txcoord_database_url", "chomik_txcoord"),
        ):
            if not getattr(self, name):
                object.__setattr__(self, name, embedded_database_url(database))
