"""The reservation state machine, pure."""

import pytest

from apps.storage.errors import IllegalTransitionError
from apps.storage.models import ReservationStatus as S
from apps.storage.states import TRANSITIONS, transition


@pytest.mark.parametrize("target", [S.RELEASED, S.COMMITTED])
def test_a_held_reservation_may_be_released_or_committed(target):
    assert transition(S.RESERVED, target) is True


@pytest.mark.parametrize("status", list(S))
def test_repeating_the_current_status_is_a_no_op(status):
    assert transition(status, status) is False


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (S.RELEASED, S.COMMITTED),
        (S.COMMITTED, S.RELEASED),
        (S.RELEASED, S.RESERVED),
        (S.COMMITTED, S.RESERVED),
    ],
)
def test_closed_reservations_cannot_move(current, target):
    with pytest.raises(IllegalTransitionError) as caught:
        transition(current, target)
    assert caught.value.status == 409
    assert caught.value.type == "illegal-transition"


def test_every_status_has_a_row_in_the_table():
    assert set(TRANSITIONS) == set(S)
