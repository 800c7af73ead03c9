"""The payment service layer: what views, consumers and jobs call."""

from apps.payment.services.applying import (
    BankResult,
    Guard,
    Outcome,
    apply_bank_result,
    expire_payment,
)
from apps.payment.services.callbacks import take_bank_callback
from apps.payment.services.polling import poll_payment
from apps.payment.services.ports import TXCOORD_PREFIX, Ports, build_ports
from apps.payment.services.reading import (
    PaymentView,
    list_payments,
    pending_payments,
    show_payment,
    view_of,
)
from apps.payment.services.starting import Started, start_payment

__all__ = [
    "TXCOORD_PREFIX",
    "BankResult",
    "Guard",
    "Outcome",
    "PaymentView",
    "Ports",
    "Started",
    "apply_bank_result",
    "build_ports",
    "expire_payment",
    "list_payments",
    "pending_payments",
    "poll_payment",
    "show_payment",
    "start_payment",
    "take_bank_callback",
    "view_of",
]
