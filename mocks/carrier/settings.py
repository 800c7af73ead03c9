"""Settings of the carrier mock."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from chomik.settings import Settings, SettingsError, env
from chomik.signing import split_secrets
from chomik.webhooks import Faults

# The same development values delivery and the gateway use (same variables).
DEV_CARRIER_CALLBACK_SECRET = "dev-only-carrier-callback-secret-change-me"
DEFAULT_CARRIER_COUNTRIES = (
    "AT,BE,BG,CH,CY,CZ,DE,DK,EE,ES,FI,FR,GB,GR,HR,HU,IE,IS,IT,LI,LT,LU,LV,MT,NL,NO,"
    "PL,PT,RO,RS,RU,SE,SI,SK"
)
DEV_CARRIER_MERCHANT_TOKENS = "dev-carrier-token:chomik"


@dataclass(frozen=True, kw_only=True)
class CarrierSettings(Settings):
    """The kit's settings plus the carrier's merchants, countries, timer and faults."""

    APP: ClassVar[str] = "carrier"

    carrier_merchant_tokens: str = env(
        "CARRIER_MERCHANT_TOKENS",
        DEV_CARRIER_MERCHANT_TOKENS,
        secret=True,
        doc="merchants of the carrier mock: `token:merchant_name` pairs, "
        "comma-separated",
    )
    carrier_callback_secrets: str = env(
        "CARRIER_CALLBACK_SECRETS",
        DEV_CARRIER_CALLBACK_SECRET,
        secret=True,
        doc="HMAC keys of carrier callbacks, comma-separated: the first signs, "
        "all verify",
    )
    carrier_callback_url: str = env(
        "CARRIER_CALLBACK_URL",
        "http://127.0.0.1:17000/api/v1/callbacks/carrier",
        doc="carrier mock: where it sends shipment callbacks (the merchant's URL)",
    )
    carrier_countries: str = env(
        "CARRIER_COUNTRIES",
        DEFAULT_CARRIER_COUNTRIES,
        doc="ISO 3166-1 alpha-2 codes the carrier delivers to, comma-separated",
    )
    carrier_step_seconds: float = env(
        "CARRIER_STEP_SECONDS",
        5.0,
        doc="carrier mock: seconds per status step of a shipment (0: only by advance)",
    )
    carrier_public_url: str = env(
        "CARRIER_PUBLIC_URL",
        "http://127.0.0.1:17005",
        doc="the carrier mock's address as customers see it (in `tracking_url`)",
    )
    carrier_fault_drop: float = env(
        "CARRIER_FAULT_DROP",
        0.0,
        doc="carrier mock: probability of dropping a callback",
    )
    carrier_fault_duplicate: float = env(
        "CARRIER_FAULT_DUPLICATE",
        0.0,
        doc="carrier mock: probability of sending a callback twice",
    )
    carrier_fault_reorder: float = env(
        "CARRIER_FAULT_REORDER",
        0.0,
        doc="carrier mock: probability of holding a callback back behind a later one",
    )
    carrier_fault_delay: float = env(
        "CARRIER_FAULT_DELAY",
        0.0,
        doc="carrier mock: seconds before a callback is sent",
    )
    carrier_fault_unavailable_until: float = env(
        "CARRIER_FAULT_UNAVAILABLE_UNTIL",
        0.0,
        doc="carrier mock: unix time until which its merchant calls answer 503",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.merchants()  # refuse a malformed list at start
        if not split_secrets(self.carrier_callback_secrets):
            raise SettingsError("CARRIER_CALLBACK_SECRETS lists no secret")

    def merchants(self) -> dict[str, str]:
        """Merchant tokens and the merchant each one names."""
        merchants: dict[str, str] = {}
        for pair in self.carrier_merchant_tokens.split(","):
            token, sep, merchant = pair.strip().rpartition(":")
            if not sep or not token or not merchant:
                raise SettingsError(
                    "CARRIER_MERCHANT_TOKENS must be token:merchant_name pairs"
                )
            merchants[token] = merchant
        return merchants

    @property
    def served_countries(self) -> frozenset[str]:
        """The countries the carrier delivers to, upper-case."""
        codes = (code.strip().upper() for code in self.carrier_countries.split(","))
        return frozenset(code for code in codes if code)

    @property
    def signing_secret(self) -> str:
        """The secret callbacks are signed with (the first of the list)."""
        return split_secrets(self.carrier_callback_secrets)[0]

    @property
    def faults(self) -> Faults:
        """The fault switches as configured (run-time overrides come on top)."""
        return Faults(
            drop=self.carrier_fault_drop,
            duplicate=self.carrier_fault_duplicate,
            reorder=self.carrier_fault_reorder,
            delay=self.carrier_fault_delay,
            unavailable_until=self.carrier_fault_unavailable_until,
        )
