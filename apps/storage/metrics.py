"""Business metrics of the storage service."""

from __future__ import annotations

from chomik.metrics import counter

RESERVATIONS = counter(
    "stock_reservations",
    "Reservations by what happened to them (reserved, released, committed, "
    "insufficient: refused for want of stock)",
    ["outcome"],
    known=("reserved", "released", "committed", "insufficient"),
)
RESERVED_UNITS = counter(
    "stock_reserved_units",
    "Units of stock by what happened to them (reserved, released, committed)",
    ["outcome"],
    known=("reserved", "released", "committed"),
)
