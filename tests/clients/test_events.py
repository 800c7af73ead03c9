"""The event contract is strict: complete events only, one table of types."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

import clients.events as events
from chomik.messaging.kafka import Envelope, Event, decode, envelope_of, event_table
from chomik.messaging.outbox import emit
from clients.events import (
    EVENT_TYPES,
    MalformedMessageError,
    OrderItem,
    OrderPaid,
    PaymentSucceeded,
    StockReserved,
)
from tests.factories.events import order_paid

PAID = OrderPaid(
    order_id="o-1",
    buyer_id="b-1",
    address_id="a-1",
    items=(OrderItem("p-1", 2), OrderItem("p-2", 1)),
)


def declared_event_classes() -> set[type[Event]]:
    return {
        value
        for value in vars(events).values()
        if isinstance(value, type) and issubclass(value, Event) and value is not Event
    }


def test_every_event_type_is_in_the_one_table_and_every_topic_is_declared():
    assert set(EVENT_TYPES.values()) == declared_event_classes()
    assert all(EVENT_TYPES[k.type] is k for k in declared_event_classes())
    assert {k.topic for k in declared_event_classes()} <= set(events.ALL_TOPICS)
    assert events.STOCK_EVENTS in events.ALL_TOPICS


def test_no_event_field_has_a_default():
    for klass in declared_event_classes():
        for f in dataclasses.fields(klass):
            assert f.default is dataclasses.MISSING, (klass.type, f.name)
            assert f.default_factory is dataclasses.MISSING, (klass.type, f.name)


def test_a_type_declared_twice_is_refused():
    @dataclasses.dataclass(frozen=True)
    class Impostor(Event):
        type = "order.paid"
        topic = "x"

        order_id: str

    with pytest.raises(TypeError, match="declared twice"):
        event_table(OrderPaid, Impostor)


def test_an_event_missing_a_field_cannot_be_built():
    with pytest.raises(TypeError, match="buyer_id"):
        OrderPaid(order_id="o-1", address_id="a-1", items=())  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="amount"):
        PaymentSucceeded(payment_id="p", order_id="o")  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "changes",
    [{"buyer_id": None}, {"items": [OrderItem("p", 1)]},
     {"items": ({"product_id": "p", "quantity": 1},)},
     {"items": (OrderItem("p", "2"),)}, {"items": (OrderItem("p", True),)}],
)  # fmt: skip
def test_an_event_with_a_wrongly_typed_field_cannot_be_built(changes):
    with pytest.raises(MalformedMessageError):
        dataclasses.replace(PAID, **changes)


def test_an_incomplete_event_is_refused_at_emit_and_nothing_is_written(dbs):
    session: Session = dbs.session("storage")
    with pytest.raises(TypeError):
        emit(session, StockReserved(order_id="o-1"))  # type: ignore[call-arg]
    with pytest.raises(MalformedMessageError):
        emit(session, StockReserved(order_id="o-1", items=None))  # type: ignore[arg-type]
    emit(session, StockReserved(order_id="o-1", items=(OrderItem("p", 1),)))
    payloads = session.execute(sa.text("SELECT payload FROM outbox_events")).scalars()
    assert [Envelope.from_json(bytes(p)).data for p in payloads] == [
        {"order_id": "o-1", "items": [{"product_id": "p", "quantity": 1}]}
    ]


def test_items_round_trip_as_dataclasses():
    envelope = Envelope.from_json(envelope_of(PAID).to_json())
    assert envelope.data["items"] == [
        {"product_id": "p-1", "quantity": 2},
        {"product_id": "p-2", "quantity": 1},
    ]
    decoded = decode(envelope, EVENT_TYPES)
    assert decoded == PAID
    assert isinstance(decoded, OrderPaid)
    assert all(isinstance(item, OrderItem) for item in decoded.items)


def data_without(event: Event, *path: str | int) -> dict:
    data = event.to_data()
    node = data
    for step in path[:-1]:
        node = node[step]
    del node[path[-1]]
    return data


@pytest.mark.parametrize(
    "path",
    [("buyer_id",), ("address_id",), ("items",), ("items", 0, "quantity"),
     ("items", 1, "product_id")],
)  # fmt: skip
def test_decoding_a_message_missing_a_field_is_malformed(path):
    with pytest.raises(MalformedMessageError, match="missing field"):
        OrderPaid.from_data(data_without(PAID, *path))


def test_decoding_a_payment_without_its_amount_is_malformed():
    paid = PaymentSucceeded("pay-1", "o-1", Decimal("12.50"))
    with pytest.raises(MalformedMessageError, match="amount"):
        PaymentSucceeded.from_data(data_without(paid, "amount"))
    with pytest.raises(MalformedMessageError):
        PaymentSucceeded.from_data({**paid.to_data(), "amount": "lots"})


@pytest.mark.parametrize(
    "items", [None, "p-1", [1, 2], [{"product_id": "p", "quantity": "2"}], {}]
)
def test_decoding_malformed_items_is_malformed(items):
    with pytest.raises(MalformedMessageError):
        OrderPaid.from_data({**PAID.to_data(), "items": items})


def test_the_factory_builds_complete_events():
    assert order_paid("o-9").order_id == "o-9"


@pytest.mark.parametrize("amount", ["NaN", "-Infinity", "sNaN"])
def test_an_amount_that_is_no_finite_number_is_malformed(amount):
    paid = PaymentSucceeded("pay-1", "o-1", Decimal("12.50"))
    with pytest.raises(MalformedMessageError, match="finite"):
        PaymentSucceeded.from_data({**paid.to_data(), "amount": amount})
