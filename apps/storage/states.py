"""The reservation state machine: one table decides every move; pure, no I/O.

    RESERVED ──release──▶ RELEASED
        └─────commit────▶ COMMITTED

Repeating a move that already happened is allowed and changes nothing (idempotent
release and commit); any other move is an `IllegalTransitionError`.
"""

from __future__ import annotations

from apps.storage.errors import IllegalTransitionError
from apps.storage.models import ReservationStatus

TRANSITIONS: dict[ReservationStatus, frozenset[ReservationStatus]] = {
    ReservationStatus.RESERVED: frozenset(
        {ReservationStatus.RELEASED, ReservationStatus.COMMITTED}
    ),
    ReservationStatus.RELEASED: frozenset(),
    ReservationStatus.COMMITTED: frozenset(),
}


def transition(current: ReservationStatus, target: ReservationStatus) -> bool:
    """Tell whether moving `current` to `target` has work to do.

    False when the reservation is already in `target` (a repeat); raises
    `IllegalTransitionError` when the move is not in the table.
    """
    if current == target:
        return False
    if target not in TRANSITIONS[current]:
        raise IllegalTransitionError(
            f"A {current.value.lower()} reservation cannot be {target.value.lower()}",
            status_from=current.value,
            status_to=target.value,
        )
    return True
