"""Storage's blueprints: the public catalog and the internal reservations."""

from apps.storage.views import products, reservations

__all__ = ["products", "reservations"]
