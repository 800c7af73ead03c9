"""Delivery's blueprints: addresses, the internal ownership check, shipments."""

from apps.delivery.views import address_checks, addresses, shipments

__all__ = ["address_checks", "addresses", "shipments"]
