"""The storage service layer: the catalog, and stock reservations that never oversell."""

from apps.storage.services.catalog import (
    SORTS,
    ProductFilters,
    ProductPage,
    access_listed_product,
    access_own_product,
    archive_product,
    create_product,
    list_products,
    update_product,
)
from apps.storage.services.stock import (
    ReserveOutcome,
    StockLine,
    commit_stock,
    get_reservation,
    prune_reservations,
    release_stock,
    reserve_stock,
)

__all__ = [
    "SORTS",
    "ProductFilters",
    "ProductPage",
    "ReserveOutcome",
    "StockLine",
    "access_listed_product",
    "access_own_product",
    "archive_product",
    "commit_stock",
    "create_product",
    "get_reservation",
    "list_products",
    "prune_reservations",
    "release_stock",
    "reserve_stock",
    "update_product",
]
