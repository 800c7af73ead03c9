"""Payment's business metrics (declared once, through `chomik.metrics`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from chomik.metrics import counter, gauge, histogram
from chomik.transient import TransientError

RESULTS = counter(
    "payment_bank_results",
    "Bank results taken, by how they came (callback, poll) and what they did "
    "(applied, duplicate, replayed, stale, unknown, mismatch, refunded, bad_signature).",
    ["source", "outcome"],
    known=[
        (source, outcome)
        for source in ("callback", "poll")
        for outcome in ("applied", "duplicate", "replayed", "stale", "refunded")
    ],
)
POLLED = counter(
    "payment_poll_rows",
    "Pending payments the poller checked at the bank, by what the bank said.",
    ["bank_status"],
)
BANK_ERRORS = counter(
    "payment_bank_errors",
    "Calls to the bank that failed (it was away or answered 5xx), by operation.",
    ["operation"],
    known=("create", "get", "refund"),
)
LATE_REFUNDS = counter(
    "payment_late_refunds",
    "Successes for payments that could no longer be applied, refunded at the bank.",
)
STARTS = counter(
    "payment_starts",
    "Payment starts, by outcome (created, existing, not_payable, bank_unavailable, "
    "refused).",
    ["outcome"],
)
EXPIRED = counter(
    "payment_expired",
    "Pending payments the bank never settled in time, expired by the poller.",
)
RECOVERY_IN_DOUBT = counter(
    "payment_recovery_in_doubt",
    "Old prepared branches txcoord's recovery found still in doubt, summed per pass.",
)
BANK_LATENCY = histogram(
    "payment_bank_call_seconds", "Latency of calls to the bank.", ["operation"]
)
SETTLED = counter(
    "payment_settled",
    "Payments settled by a bank result, by status (succeeded, failed) and by how "
    "the result came (callback, poll); expiries are payment_expired.",
    ["status", "source"],
    known=[(s, p) for s in ("succeeded", "failed") for p in ("callback", "poll")],
)
CALLBACK_APPLY_SECONDS = histogram(
    "payment_callback_apply_seconds",
    "From the gateway taking a bank callback to payment applying it.",
)
PENDING = gauge(
    "payment_pending",
    "Payments PENDING at the bank (refreshed by every payment worker replica).",
    aggregate="livemax",
)
PENDING_OLDEST_AGE = gauge(
    "payment_pending_oldest_age_seconds",
    "Age of the oldest PENDING payment (0: none).",
    aggregate="livemax",
)


@contextlib.contextmanager
def bank_call(operation: str) -> Iterator[None]:
    """Time one call to the bank, and count it when the bank was away."""
    with BANK_LATENCY.labels(operation).time():
        try:
            yield
        except TransientError:
            BANK_ERRORS.labels(operation).inc()
            raise
