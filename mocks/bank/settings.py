"""Settings of the bank mock."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import ClassVar

from chomik.settings import Settings, SettingsError, env
from chomik.signing import split_secrets
from chomik.webhooks import Faults

# The same development value the gateway verifies with (both read the same variable).
DEV_BANK_CALLBACK_SECRET = "dev-only-bank-callback-secret-change-me"
DEV_MERCHANT_ACCOUNT = "00000000-0000-4000-8000-00000000b001"
DEV_MERCHANT_TOKENS = f"dev-merchant-token:{DEV_MERCHANT_ACCOUNT}"


@dataclass(frozen=True, kw_only=True)
class BankSettings(Settings):
    """The kit's settings plus the bank's merchants, callback secrets and faults."""

    APP: ClassVar[str] = "bank"

    bank_merchant_tokens: str = env(
        "BANK_MERCHANT_TOKENS",
        DEV_MERCHANT_TOKENS,
        secret=True,
        doc="merchants of the bank mock: `token:merchant_account_id` pairs, "
        "comma-separated",
    )
    bank_callback_secrets: str = env(
        "BANK_CALLBACK_SECRETS",
        DEV_BANK_CALLBACK_SECRET,
        secret=True,
        doc="HMAC keys of bank callbacks, comma-separated: the first signs, all verify",
    )
    bank_public_url: str = env(
        "BANK_PUBLIC_URL",
        "http://127.0.0.1:17006",
        doc="the bank mock's address as customers see it (in `pay_url`)",
    )
    bank_fault_drop: float = env(
        "BANK_FAULT_DROP", 0.0, doc="bank mock: probability of dropping a callback"
    )
    bank_fault_duplicate: float = env(
        "BANK_FAULT_DUPLICATE",
        0.0,
        doc="bank mock: probability of sending a callback twice",
    )
    bank_fault_reorder: float = env(
        "BANK_FAULT_REORDER",
        0.0,
        doc="bank mock: probability of holding a callback back so later ones "
        "(of its transaction or others) overtake it",
    )
    bank_fault_delay: float = env(
        "BANK_FAULT_DELAY", 0.0, doc="bank mock: seconds before a callback is sent"
    )
    bank_fault_unavailable_until: float = env(
        "BANK_FAULT_UNAVAILABLE_UNTIL",
        0.0,
        doc="bank mock: unix time until which POST /transactions answers 503",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.merchants()  # refuse a malformed list at start
        if not split_secrets(self.bank_callback_secrets):
            raise SettingsError("BANK_CALLBACK_SECRETS lists no secret")

    def merchants(self) -> dict[str, uuid.UUID]:
        """Merchant tokens and the account each one is paid into."""
        merchants: dict[str, uuid.UUID] = {}
        for pair in self.bank_merchant_tokens.split(","):
            token, sep, account = pair.strip().rpartition(":")
            try:
                merchants[token] = uuid.UUID(account)
            except ValueError:
                sep = ""
            if not sep or not token:
                raise SettingsError(
                    "BANK_MERCHANT_TOKENS must be token:merchant_account_id pairs"
                )
        return merchants

    @property
    def signing_secret(self) -> str:
        """The secret callbacks are signed with (the first of the list)."""
        return split_secrets(self.bank_callback_secrets)[0]

    @property
    def faults(self) -> Faults:
        """The fault switches as configured (run-time overrides come on top)."""
        return Faults(
            drop=self.bank_fault_drop,
            duplicate=self.bank_fault_duplicate,
            reorder=self.bank_fault_reorder,
            delay=self.bank_fault_delay,
            unavailable_until=self.bank_fault_unavailable_until,
        )
