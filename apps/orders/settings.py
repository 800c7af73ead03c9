"""Settings of the orders service."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from chomik.settings import Settings


@dataclass(frozen=True, kw_only=True)
class OrdersSettings(Settings):
    """The kit's settings; the orders service adds its own fields here."""

    APP: ClassVar[str] = "orders"
