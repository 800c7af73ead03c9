"""The shipment state machine: forward only, jumps filled in; pure."""

import pytest

from apps.delivery.models import ShipmentStatus
from apps.delivery.states import Ignored, steps, why_ignored

S = ShipmentStatus


@pytest.mark.parametrize(
    ("current", "target", "passed"),
    [
        (S.CREATED, S.IN_TRANSIT, (S.IN_TRANSIT,)),
        (S.IN_TRANSIT, S.DELIVERED, (S.DELIVERED,)),
        (S.CREATED, S.DELIVERED, (S.IN_TRANSIT, S.DELIVERED)),  # "in transit" lost
    ],
)
def test_a_shipment_moves_forward_through_every_status_between(current, target, passed):
    assert why_ignored(current, target) is None
    assert steps(current, target) == passed


@pytest.mark.parametrize("status", list(S))
def test_the_same_status_again_is_ignored_as_repeated(status):
    assert why_ignored(status, status) == Ignored.REPEATED
    assert steps(status, status) == ()


@pytest.mark.parametrize(
    ("current", "target"),
    [(S.IN_TRANSIT, S.CREATED), (S.DELIVERED, S.IN_TRANSIT), (S.DELIVERED, S.CREATED)],
)
def test_a_status_behind_the_shipments_is_ignored_as_backwards(current, target):
    assert why_ignored(current, target) == Ignored.BACKWARDS
    assert steps(current, target) == ()
