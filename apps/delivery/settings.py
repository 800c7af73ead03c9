"""Settings of the delivery service."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from apps.delivery.countries import ISO_COUNTRIES
from chomik.settings import Settings, SettingsError, env

# The European countries the development carrier delivers to.
DEFAULT_CARRIER_COUNTRIES = (
    "AT,BE,BG,CH,CY,CZ,DE,DK,EE,ES,FI,FR,GB,GR,HR,HU,IE,IS,IT,LI,LT,LU,LV,MT,NL,NO,"
    "PL,PT,RO,RS,RU,SE,SI,SK"
)


@dataclass(frozen=True, kw_only=True)
class DeliverySettings(Settings):
    """The kit's settings plus the countries the carrier serves."""

    APP: ClassVar[str] = "delivery"

    carrier_countries: str = env(
        "CARRIER_COUNTRIES",
        DEFAULT_CARRIER_COUNTRIES,
        doc="ISO 3166-1 alpha-2 codes the carrier delivers to, comma-separated",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = sorted(self.served_countries - ISO_COUNTRIES)
        if unknown or not self.served_countries:
            raise SettingsError(
                f"CARRIER_COUNTRIES={self.carrier_countries!r} must list ISO 3166-1 "
                f"alpha-2 codes (unknown: {', '.join(unknown) or 'none given'})"
            )

    @property
    def served_countries(self) -> frozenset[str]:
        """The carrier's countries as a set of upper-case codes."""
        codes = (code.strip().upper() for code in self.carrier_countries.split(","))
        return frozenset(code for code in codes if code)
