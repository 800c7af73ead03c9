"""Settings of the delivery service."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from chomik.settings import Settings


@dataclass(frozen=True, kw_only=True)
class DeliverySettings(Settings):
    """The kit's settings; the delivery service adds its own fields here."""

    APP: ClassVar[str] = "delivery"
