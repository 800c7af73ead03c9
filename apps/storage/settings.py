"""Settings of the storage service."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from chomik.settings import Settings, env


@dataclass(frozen=True, kw_only=True)
class StorageSettings(Settings):
    """The kit's settings plus the storage service's own fields."""

    APP: ClassVar[str] = "storage"

    reservation_retention: int = env(
        "RESERVATION_RETENTION",
        30 * 24 * 3600,
        doc="seconds a released or committed reservation is kept (its RELEASED "
        "marker refuses a late reserve: far past any order's life)",
    )
