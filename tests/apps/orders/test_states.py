"""The order state machine, pure: every legal and every illegal move."""

import itertools

import pytest

from apps.orders import states
from clients import orders as contract
from clients.orders import IllegalTransitionError, OrderStatus

S = OrderStatus
LEGAL = {
    (S.AWAITING_PAYMENT, S.PAYMENT_PENDING),
    (S.AWAITING_PAYMENT, S.CANCELLED),
    (S.AWAITING_PAYMENT, S.EXPIRED),
    (S.PAYMENT_PENDING, S.PAID),
    (S.PAYMENT_PENDING, S.PAYMENT_FAILED),
    (S.PAYMENT_FAILED, S.PAYMENT_PENDING),
    (S.PAYMENT_FAILED, S.CANCELLED),
    (S.PAYMENT_FAILED, S.EXPIRED),
    (S.PAID, S.SHIPPED),
    (S.PAID, S.DELIVERED),
    (S.SHIPPED, S.DELIVERED),
}
ALL_PAIRS = list(itertools.product(S, S))


def test_the_app_uses_the_contracts_table_and_adds_nothing():
    assert states.TRANSITIONS is contract.TRANSITIONS
    assert states.check_transition is contract.check_transition
    assert set(states.TRANSITIONS) == set(S)


@pytest.mark.parametrize(("current", "target"), sorted(LEGAL))
def test_a_legal_move_passes(current, target):
    states.check_transition(current, target)
    assert current in states.sources_of(target)


@pytest.mark.parametrize(
    ("current", "target"), [p for p in ALL_PAIRS if p not in LEGAL]
)
def test_an_illegal_move_is_refused(current, target):
    with pytest.raises(IllegalTransitionError) as caught:
        states.check_transition(current, target)
    assert caught.value.status == 409
    assert caught.value.type == "illegal-transition"
    assert caught.value.extra == {
        "status_from": current.value,
        "status_to": target.value,
    }
    assert current not in states.sources_of(target)


def test_terminal_statuses_go_nowhere():
    for status in (S.DELIVERED, S.CANCELLED, S.EXPIRED):
        assert states.TRANSITIONS[status] == frozenset()


def test_only_unpaid_orders_holding_stock_expire():
    assert {S.AWAITING_PAYMENT, S.PAYMENT_FAILED} == states.EXPIRABLE
    assert all(S.EXPIRED in states.TRANSITIONS[s] for s in states.EXPIRABLE)


@pytest.mark.parametrize(
    ("current", "target", "reached"),
    [
        (S.PAID, S.PAID, True),
        (S.SHIPPED, S.PAID, True),
        (S.DELIVERED, S.SHIPPED, True),
        (S.DELIVERED, S.PAID, True),
        (S.PAYMENT_PENDING, S.PAID, False),
        (S.PAID, S.SHIPPED, False),
        (S.SHIPPED, S.DELIVERED, False),
        (S.CANCELLED, S.PAID, False),
        (S.EXPIRED, S.PAID, False),
        (S.PAYMENT_FAILED, S.PAID, False),
        (S.CANCELLED, S.CANCELLED, True),
    ],
)
def test_has_reached_follows_the_way_forward_only(current, target, reached):
    assert states.has_reached(current, target) is reached
