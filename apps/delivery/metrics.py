"""Business metrics of the delivery service."""

from __future__ import annotations

from chomik.metrics import counter

SHIPMENT_NEWS_IGNORED = counter(
    "delivery_shipment_news_ignored",
    "Carrier statuses that changed nothing: repeated, or behind the shipment's",
    ["source", "reason"],
    known=[(s, r) for s in ("callback", "poll") for r in ("repeated", "backwards")],
)
SHIPMENTS = counter(
    "delivery_shipments",
    "Shipments reaching each status (CREATED, IN_TRANSIT, DELIVERED)",
    ["status"],
    known=("CREATED", "IN_TRANSIT", "DELIVERED"),
)
CARRIER_ERRORS = counter(
    "delivery_carrier_errors",
    "Calls to the carrier that failed (it was away or answered 5xx), by operation",
    ["operation"],
    known=("create", "get"),
)
