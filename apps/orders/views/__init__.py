"""Orders' blueprints: the public orders and the internal read for other services."""

from apps.orders.views import internal, orders

__all__ = ["internal", "orders"]
