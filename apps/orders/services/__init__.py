"""The orders service layer: placing, reading, and moving orders through their life."""

from apps.orders.services.lifecycle import (
    advance_order,
    cancel_order,
    expire_order,
    prune_placement_attempts,
    release_abandoned_placement,
)
from apps.orders.services.placing import (
    AddressCheck,
    OrderRequest,
    Placed,
    Ports,
    order_id_for,
    place_order,
)
from apps.orders.services.reading import (
    OrderLine,
    OrderPage,
    OrderView,
    access_order,
    count_orders_by_status,
    get_order,
    list_orders,
    show_order,
    view_of,
)

__all__ = [
    "AddressCheck",
    "OrderLine",
    "OrderPage",
    "OrderRequest",
    "OrderView",
    "Placed",
    "Ports",
    "access_order",
    "advance_order",
    "cancel_order",
    "count_orders_by_status",
    "expire_order",
    "get_order",
    "list_orders",
    "order_id_for",
    "place_order",
    "prune_placement_attempts",
    "release_abandoned_placement",
    "show_order",
    "view_of",
]
