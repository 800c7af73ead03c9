"""Business metrics of the delivery service."""

from __future__ import annotations

from chomik.metrics import counter

SHIPMENT_NEWS_IGNORED = counter(
    "delivery_shipment_news_ignored",
    "Carrier statuses that changed nothing: repeated, or behind the shipment's",
    ["source", "reason"],
)
