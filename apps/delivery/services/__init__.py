"""The delivery service layer: buyers' addresses, and one shipment per paid order.

Edges (views, consumers, jobs) import from here; `addresses` and `shipments` hold
the functions.
"""

from apps.delivery.services.addresses import (
    create_address,
    delete_address,
    get_buyer_address,
    list_addresses,
    release_address,
    use_address,
)
from apps.delivery.services.shipments import (
    CarrierNews,
    ShipmentView,
    apply_carrier_news,
    list_shipments,
    poll_shipment,
    register_shipment,
    show_shipment,
    take_carrier_callback,
)

__all__ = [
    "CarrierNews",
    "ShipmentView",
    "apply_carrier_news",
    "create_address",
    "delete_address",
    "get_buyer_address",
    "list_addresses",
    "list_shipments",
    "poll_shipment",
    "register_shipment",
    "release_address",
    "show_shipment",
    "take_carrier_callback",
    "use_address",
]
