"""Payment's business metrics (declared once, through `chomik.metrics`)."""

from __future__ import annotations

from chomik.metrics import counter, histogram

RESULTS = counter(
    "payment_bank_results",
    "Bank results taken, by how they came (callback, poll) and what they did "
    "(applied, duplicate, replayed, stale, unknown, mismatch, refunded, bad_signature).",
    ["source", "outcome"],
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
)
LATE_REFUNDS = counter(
    "payment_late_refunds",
    "Successes for payments that could no longer be applied, refunded at the bank.",
)
STARTS = counter(
    "payment_starts",
    "Payment starts, by outcome (created, existing, not_payable, bank_unavailable).",
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
