"""The payment state machine: one table decides every move; pure, no I/O.

    STARTING ──▶ PENDING ──▶ SUCCEEDED
                    ├──────▶ FAILED
                    └──────▶ EXPIRED   (the bank never settled it in time)

A final status never changes again: a duplicate, stale or reordered bank result
for a payment that is no longer PENDING changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

from apps.payment.models import PaymentStatus
from chomik.problems import ConflictError

S = PaymentStatus
TRANSITIONS: Mapping[PaymentStatus, frozenset[PaymentStatus]] = {
    S.STARTING: frozenset({S.PENDING}),
    S.PENDING: frozenset({S.SUCCEEDED, S.FAILED, S.EXPIRED}),
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset(),
    S.EXPIRED: frozenset(),
}

FINAL = frozenset(s for s, targets in TRANSITIONS.items() if not targets)

# What each bank transaction status makes of a pending payment.
BANK_RESULTS: Mapping[str, PaymentStatus] = {
    "SUCCEEDED": S.SUCCEEDED,
    "FAILED": S.FAILED,
}


class IllegalTransitionError(ConflictError):
    """The payment cannot make this move from its status (409 illegal-transition)."""

    type, title = "illegal-transition", "Illegal payment transition"


def sources_of(target: PaymentStatus) -> frozenset[PaymentStatus]:
    """The statuses a payment may move to `target` from."""
    return frozenset(s for s, targets in TRANSITIONS.items() if target in targets)


def check_transition(current: PaymentStatus, target: PaymentStatus) -> None:
    """Raise IllegalTransitionError unless `current → target` is in the table."""
    if target not in TRANSITIONS[current]:
        raise IllegalTransitionError(
            f"A payment {current.value} cannot become {target.value}",
            status_from=current.value,
            status_to=target.value,
        )
