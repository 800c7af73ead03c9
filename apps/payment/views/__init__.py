"""Payment's blueprints: the payments, and the start of an order's payment."""

from apps.payment.views import payments, starts

__all__ = ["payments", "starts"]
