"""Settings of the bank mock."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from chomik.settings import Settings


@dataclass(frozen=True, kw_only=True)
class BankSettings(Settings):
    """The kit's settings; the bank mock adds its own fields here."""

    APP: ClassVar[str] = "bank"
