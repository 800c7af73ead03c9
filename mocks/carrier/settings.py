"""Settings of the carrier mock."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from chomik.settings import Settings


@dataclass(frozen=True, kw_only=True)
class CarrierSettings(Settings):
    """The kit's settings; the carrier mock adds its own fields here."""

    APP: ClassVar[str] = "carrier"
