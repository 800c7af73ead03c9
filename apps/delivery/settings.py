"""Settings of the delivery service."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from apps.delivery.countries import ISO_COUNTRIES
from chomik.settings import Settings, SettingsError, env
from chomik.signing import split_secrets

# The development values the carrier mock and the gateway use (same variables).
DEV_CARRIER_MERCHANT_TOKEN = "dev-carrier-token"
DEV_CARRIER_CALLBACK_SECRET = "dev-only-carrier-callback-secret-change-me"

# The European countries the development carrier delivers to.
DEFAULT_CARRIER_COUNTRIES = (
    "AT,BE,BG,CH,CY,CZ,DE,DK,EE,ES,FI,FR,GB,GR,HR,HU,IE,IS,IT,LI,LT,LU,LV,MT,NL,NO,"
    "PL,PT,RO,RS,RU,SE,SI,SK"
)


@dataclass(frozen=True, kw_only=True)
class DeliverySettings(Settings):
    """The kit's settings plus the carrier: where, as whom, and how to follow it."""

    APP: ClassVar[str] = "delivery"

    carrier_countries: str = env(
        "CARRIER_COUNTRIES",
        DEFAULT_CARRIER_COUNTRIES,
        doc="ISO 3166-1 alpha-2 codes the carrier delivers to, comma-separated",
    )
    carrier_url: str = env(
        "CARRIER_URL", "http://127.0.0.1:17005", doc="the carrier's API base URL"
    )
    carrier_merchant_token: str = env(
        "CARRIER_MERCHANT_TOKEN",
        DEV_CARRIER_MERCHANT_TOKEN,
        secret=True,
        doc="delivery's merchant token at the carrier",
    )
    carrier_callback_secrets: str = env(
        "CARRIER_CALLBACK_SECRETS",
        DEV_CARRIER_CALLBACK_SECRET,
        secret=True,
        doc="HMAC keys of carrier callbacks, comma-separated: the first signs, "
        "all verify",
    )
    shipment_poll_interval: float = env(
        "SHIPMENT_POLL_INTERVAL",
        15.0,
        doc="seconds between runs of the delivery worker's shipment poller",
    )
    shipment_poll_age: int = env(
        "SHIPMENT_POLL_AGE",
        60,
        doc="seconds without news of an undelivered shipment before the poller "
        "asks the carrier",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = sorted(self.served_countries - ISO_COUNTRIES)
        if unknown or not self.served_countries:
            raise SettingsError(
                f"CARRIER_COUNTRIES={self.carrier_countries!r} must list ISO 3166-1 "
                f"alpha-2 codes (unknown: {', '.join(unknown) or 'none given'})"
            )
        if not split_secrets(self.carrier_callback_secrets):
            raise SettingsError("CARRIER_CALLBACK_SECRETS lists no secret")

    @property
    def served_countries(self) -> frozenset[str]:
        """The carrier's countries as a set of upper-case codes."""
        codes = (code.strip().upper() for code in self.carrier_countries.split(","))
        return frozenset(code for code in codes if code)

    @property
    def callback_secrets(self) -> tuple[str, ...]:
        """The secrets a carrier callback may be signed with."""
        return split_secrets(self.carrier_callback_secrets)
