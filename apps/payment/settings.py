"""Settings of the payment service."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from chomik.settings import Settings


@dataclass(frozen=True, kw_only=True)
class PaymentSettings(Settings):
    """The kit's settings; the payment service adds its own fields here."""

    APP: ClassVar[str] = "payment"
