"""Delivery's blueprints: buyers' addresses and the internal ownership check."""

from apps.delivery.views import address_checks, addresses

__all__ = ["address_checks", "addresses"]
