"""`chomik check`: a consistent world passes; each broken invariant is reported by id.

Every database is real and committed to (the audit reads in its own read-only
transactions); the world is seeded through the apps' models, one purchase per
state that matters, and each test breaks one thing in it.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from apps.delivery.models import Shipment, ShipmentStatus
from apps.orders.models import Order, OrderItem
from apps.payment.models import Payment, PaymentStatus
from apps.storage.models import (
    Product,
    ProductCondition,
    Reservation,
    ReservationItem,
    ReservationStatus,
)
from chomik.check import INVARIANTS, Limits, audit, run_checks
from chomik.cli import main
from chomik.db import utcnow
from chomik.messaging.kafka import dlq, ensure_topics
from clients.orders import OrderStatus
from mocks.bank.models import Account, Transaction, TransactionStatus
from tests.chomik.messaging_helpers import publish

pytestmark = pytest.mark.usefixtures("committed_db")

NOW = Limits(grace=0, outbox_age=0, txcoord_timeout=0)
PRICE = Decimal("100.00")
PAID_STATES = (OrderStatus.PAID, OrderStatus.SHIPPED, OrderStatus.DELIVERED)
SHIPMENT_OF = {
    OrderStatus.PAID: ShipmentStatus.CREATED,
    OrderStatus.SHIPPED: ShipmentStatus.IN_TRANSIT,
    OrderStatus.DELIVERED: ShipmentStatus.DELIVERED,
}


class World:
    """Purchases seeded consistently across the orders, storage, payment,
    delivery and bank databases; `sql(db, ...)` then breaks one thing."""

    def __init__(self, infra) -> None:
        self.infra = infra
        self.merchant = uuid.uuid4()
        self.payer = uuid.uuid4()
        with self.session("bank") as bank:
            bank.add_all([
                Account(id=self.merchant, owner="chomik", balance=Decimal(0)),
                Account(id=self.payer, owner="buyer", balance=Decimal(10_000)),
            ])  # fmt: skip
            bank.commit()

    def session(self, name: str) -> Session:
        return Session(self.infra.engine(name), expire_on_commit=False)

    def sql(self, name: str, statement: str, **params) -> None:
        with self.infra.engine(name).begin() as conn:
            conn.execute(sa.text(statement), params)

    def purchase(self, status: OrderStatus) -> dict[str, str]:
        """One order in `status` with everything the other databases hold for it."""
        order_id, product_id = uuid.uuid4(), uuid.uuid4()
        paid = status in PAID_STATES
        reservation = {
            OrderStatus.CANCELLED: ReservationStatus.RELEASED,
            OrderStatus.EXPIRED: ReservationStatus.RELEASED,
        }.get(
            status, ReservationStatus.COMMITTED if paid else ReservationStatus.RESERVED
        )
        ids = {"order": str(order_id), "product": str(product_id)}
        ids["reservation"] = self._stock(order_id, product_id, reservation)
        self._order(order_id, product_id, status)
        if status in (*PAID_STATES, OrderStatus.PAYMENT_PENDING):
            ids["payment"], ids["transaction"] = self._payment(order_id, paid)
        if status in SHIPMENT_OF:
            ids["shipment"] = self._shipment(order_id, SHIPMENT_OF[status])
        return ids

    def _stock(self, order_id, product_id, status: ReservationStatus) -> str:
        counts = {"quantity": 10, "reserved": 0, "sold": 0}
        if status is ReservationStatus.RESERVED:
            counts["reserved"] = 1
        elif status is ReservationStatus.COMMITTED:
            counts.update(quantity=9, sold=1)
        with self.session("storage") as storage:
            storage.add(Product(
                id=product_id, seller_id=uuid.uuid4(), title="Air", brand="Nike",
                model="Air", size="42", color="white",
                condition=ProductCondition.NEW, price=PRICE, currency="RUB", **counts,
            ))  # fmt: skip
            storage.flush()
            reservation = Reservation(order_id=order_id, status=status, items=[
                ReservationItem(product_id=product_id, quantity=1, title="Air",
                                unit_price=PRICE, currency="RUB"),
            ])  # fmt: skip
            storage.add(reservation)
            storage.commit()
            return str(reservation.id)

    def _order(self, order_id, product_id, status: OrderStatus) -> None:
        with self.session("orders") as orders:
            orders.add(Order(
                id=order_id, buyer_id=uuid.uuid4(), status=status,
                address_id=uuid.uuid4(), currency="RUB", total=PRICE,
                expires_at=utcnow() + dt.timedelta(minutes=15), items=[
                    OrderItem(product_id=product_id, seller_id=uuid.uuid4(),
                              title="Air", quantity=1, unit_price=PRICE),
                ],
            ))  # fmt: skip
            orders.commit()

    def _payment(self, order_id, paid: bool) -> tuple[str, str]:
        payment_id, transaction_id = uuid.uuid4(), uuid.uuid4()
        status = PaymentStatus.SUCCEEDED if paid else PaymentStatus.PENDING
        with self.session("payment") as payment:
            payment.add(Payment(
                id=payment_id, order_id=order_id, buyer_id=uuid.uuid4(),
                status=status, amount=PRICE, currency="RUB",
                bank_transaction_id=transaction_id,
            ))  # fmt: skip
            payment.commit()
        with self.session("bank") as bank:
            bank.add(Transaction(
                id=transaction_id, merchant_account_id=self.merchant,
                reference=str(payment_id), amount=PRICE, currency="RUB",
                callback_url="http://127.0.0.1:1/callbacks",
                status=TransactionStatus.SUCCEEDED if paid else TransactionStatus.CREATED,
                payer_account_id=self.payer if paid else None,
            ))  # fmt: skip
            bank.commit()
        return str(payment_id), str(transaction_id)

    def _shipment(self, order_id, status: ShipmentStatus) -> str:
        shipment_id = uuid.uuid4()
        with self.session("delivery") as delivery:
            delivery.add(Shipment(
                id=shipment_id, order_id=order_id, buyer_id=uuid.uuid4(),
                address_id=uuid.uuid4(), status=status,
                carrier_shipment_id=uuid.uuid4(), tracking_number="TRK1",
                tracking_url="http://carrier.test/TRK1",
            ))  # fmt: skip
            delivery.commit()
        return str(shipment_id)


@pytest.fixture
def world(infra):
    return World(infra)


@pytest.fixture
def purchases(world):
    """One purchase in every order status."""
    return {status: world.purchase(status) for status in OrderStatus}


def found(infra, invariant, limits=NOW):
    """The ids of each violation of `invariant`, as sets."""
    return [
        set(v.ids) for v in run_checks(infra.urls, limits=limits)
        if v.invariant == invariant
    ]  # fmt: skip


def test_a_consistent_world_passes_every_invariant(infra, purchases):
    report = audit(infra.urls, limits=NOW)
    assert report.violations == ()
    assert report.checked == tuple(i.name for i in INVARIANTS)


def test_a_paid_order_without_a_succeeded_payment_is_reported(infra, world, purchases):
    paid = purchases[OrderStatus.PAID]
    world.sql("payment", "UPDATE payments SET status = 'FAILED' WHERE id = :id",
              id=paid["payment"])  # fmt: skip
    assert {paid["order"]} in found(infra, "order-paid-once")


def test_a_succeeded_payment_of_an_unpaid_order_is_reported(infra, world, purchases):
    pending = purchases[OrderStatus.PAYMENT_PENDING]
    world.sql("payment", "UPDATE payments SET status = 'SUCCEEDED' WHERE id = :id",
              id=pending["payment"])  # fmt: skip
    assert {pending["order"], pending["payment"]} in found(infra, "order-paid-once")


def test_a_second_succeeded_payment_is_reported(infra, world, purchases):
    shipped = purchases[OrderStatus.SHIPPED]
    other = str(uuid.uuid4())
    world.sql(
        "payment",
        "INSERT INTO payments (id, order_id, buyer_id, status, amount, currency) "
        "VALUES (:id, :order, :buyer, 'SUCCEEDED', 100, 'RUB')",
        id=other, order=shipped["order"], buyer=str(uuid.uuid4()),
    )  # fmt: skip
    ids = {shipped["order"], shipped["payment"], other}
    assert ids in found(infra, "order-paid-once")


def test_a_refunded_success_does_not_count_as_paid(infra, world, purchases):
    delivered = purchases[OrderStatus.DELIVERED]
    world.sql("payment", "UPDATE payments SET refunded_at = now() WHERE id = :id",
              id=delivered["payment"])  # fmt: skip
    assert {delivered["order"]} in found(infra, "order-paid-once")


def test_a_shipped_order_without_a_shipment_is_reported(infra, world, purchases):
    shipped = purchases[OrderStatus.SHIPPED]
    world.sql("delivery", "DELETE FROM shipments WHERE id = :id",
              id=shipped["shipment"])  # fmt: skip
    assert {shipped["order"]} in found(infra, "order-shipped-once")


def test_a_shipment_of_an_unpaid_order_is_reported(infra, world, purchases):
    awaiting = purchases[OrderStatus.AWAITING_PAYMENT]
    shipment = world._shipment(uuid.UUID(awaiting["order"]), ShipmentStatus.CREATED)
    assert {awaiting["order"], shipment} in found(infra, "order-shipped-once")


def test_an_order_behind_its_delivered_shipment_is_reported(infra, world, purchases):
    shipped = purchases[OrderStatus.SHIPPED]
    world.sql("delivery", "UPDATE shipments SET status = 'DELIVERED' WHERE id = :id",
              id=shipped["shipment"])  # fmt: skip
    ids = {shipped["order"], shipped["shipment"]}
    assert ids in found(infra, "order-shipped-once")


def test_reserved_above_quantity_is_reported(infra, world, purchases):
    product = purchases[OrderStatus.AWAITING_PAYMENT]["product"]
    checks = ("reserved_within_quantity", "quantity_not_negative")
    world.sql("storage", "ALTER TABLE products " + ", ".join(
        f"DROP CONSTRAINT ck_products_{name}" for name in checks))  # fmt: skip
    try:
        world.sql("storage", "UPDATE products SET quantity = -1 WHERE id = :id",
                  id=product)  # fmt: skip
        assert found(infra, "stock-within-bounds") == [{product}]
    finally:
        world.sql("storage", "UPDATE products SET quantity = 10 WHERE id = :id",
                  id=product)  # fmt: skip
        world.sql("storage", "ALTER TABLE products " + ", ".join(
            f"ADD CONSTRAINT ck_products_{name} CHECK "
            + ("(reserved <= quantity)" if name.startswith("reserved")
               else "(quantity >= 0)")
            for name in checks))  # fmt: skip


def test_sold_units_no_reservation_sold_are_reported(infra, world, purchases):
    product = purchases[OrderStatus.DELIVERED]["product"]
    world.sql("storage", "UPDATE products SET sold = sold + 2 WHERE id = :id",
              id=product)  # fmt: skip
    assert found(infra, "stock-conserved") == [{product}]


def test_reserved_units_no_reservation_holds_are_reported(infra, world, purchases):
    product = purchases[OrderStatus.PAYMENT_FAILED]["product"]
    world.sql("storage", "UPDATE products SET reserved = 0 WHERE id = :id",
              id=product)  # fmt: skip
    assert found(infra, "stock-conserved") == [{product}]


def test_an_open_reservation_of_a_cancelled_order_is_reported(infra, world, purchases):
    cancelled = purchases[OrderStatus.CANCELLED]
    world.sql("storage", "UPDATE reservations SET status = 'RESERVED' WHERE id = :id",
              id=cancelled["reservation"])  # fmt: skip
    ids = {cancelled["order"], cancelled["reservation"]}
    assert ids in found(infra, "reservation-held")


def test_an_open_reservation_without_an_order_is_reported(infra, world, purchases):
    awaiting = purchases[OrderStatus.AWAITING_PAYMENT]
    world.sql("orders", "DELETE FROM orders WHERE id = :id", id=awaiting["order"])
    ids = {awaiting["order"], awaiting["reservation"]}
    assert ids in found(infra, "reservation-held")


def test_a_placement_in_progress_holds_its_reservation(infra, world, purchases):
    awaiting = purchases[OrderStatus.AWAITING_PAYMENT]
    world.sql("orders", "DELETE FROM orders WHERE id = :id", id=awaiting["order"])
    world.sql(
        "orders",
        "INSERT INTO placement_attempts (order_id, buyer_id, next_check_at) "
        "VALUES (:id, :buyer, now() + interval '15 minutes')",
        id=awaiting["order"], buyer=str(uuid.uuid4()),
    )  # fmt: skip
    assert found(infra, "reservation-held") == []


def test_an_order_holding_stock_without_a_reservation_is_reported(
    infra, world, purchases
):
    pending = purchases[OrderStatus.PAYMENT_PENDING]
    world.sql("storage", "UPDATE reservations SET status = 'RELEASED' WHERE id = :id",
              id=pending["reservation"])  # fmt: skip
    ids = {pending["order"], pending["reservation"]}
    assert ids in found(infra, "reservation-held")


def test_a_sold_reservation_of_an_expired_order_is_reported(infra, world, purchases):
    expired = purchases[OrderStatus.EXPIRED]
    world.sql("storage", "UPDATE reservations SET status = 'COMMITTED' WHERE id = :id",
              id=expired["reservation"])  # fmt: skip
    ids = {expired["order"], expired["reservation"]}
    assert found(infra, "reservation-sold") == [ids]


def test_a_paid_order_whose_stock_was_not_sold_is_reported(infra, world, purchases):
    paid = purchases[OrderStatus.PAID]
    world.sql("storage", "DELETE FROM reservations WHERE id = :id",
              id=paid["reservation"])  # fmt: skip
    assert {paid["order"]} in found(infra, "reservation-sold")


def test_an_order_whose_lines_are_not_its_reservation_is_reported(
    infra, world, purchases
):
    paid = purchases[OrderStatus.PAID]
    world.sql("orders", "UPDATE order_items SET quantity = 2 WHERE order_id = :id",
              id=paid["order"])  # fmt: skip
    assert found(infra, "reservation-lines") == [{paid["order"]}]


def test_a_transaction_prepared_too_long_is_reported(infra, world, purchases):
    gid = f"test:{uuid.uuid4().hex}"
    autocommit = infra.engine("orders").execution_options(isolation_level="AUTOCOMMIT")
    with autocommit.connect() as conn:
        conn.execute(sa.text("BEGIN"))
        conn.execute(sa.text("UPDATE orders SET updated_at = updated_at"))
        conn.execute(sa.text(f"PREPARE TRANSACTION '{gid}'"))
    try:
        time.sleep(0.05)
        assert found(infra, "no-stale-prepared") == [{gid}]
        assert found(infra, "no-stale-prepared", Limits(txcoord_timeout=60)) == []
    finally:
        with autocommit.connect() as conn:
            conn.execute(sa.text(f"ROLLBACK PREPARED '{gid}'"))


def outbox_row(world, name: str, **columns) -> str:
    event_id = str(uuid.uuid4())
    extra = "".join(f", {column}" for column in columns)
    values = "".join(f", {value}" for value in columns.values())
    world.sql(
        name,
        f"INSERT INTO outbox_events (id, topic, key, type, payload{extra}) "
        f"VALUES (:id, 'orders.events', 'k', 'order.paid', ''::bytea{values})",
        id=event_id,
    )
    return event_id


def test_an_outbox_row_unpublished_past_the_bound_is_reported(infra, world, purchases):
    old = outbox_row(world, "payment", created_at="now() - interval '2 minutes'")
    outbox_row(world, "orders")  # young, under the default bound of 60 s
    outbox_row(world, "storage", created_at="now() - interval '1 hour'",
               sent_at="now()")  # fmt: skip
    limits = Limits(grace=0)
    assert found(infra, "outbox-drained", limits) == [{old}]


def test_a_parked_outbox_row_is_reported(infra, world, purchases):
    parked = outbox_row(world, "delivery", parked_at="now()",
                        last_error="'MessageSizeTooLargeError'")  # fmt: skip
    assert found(infra, "outbox-none-parked") == [{parked}]


def test_a_dead_letter_is_reported(infra, world, purchases):
    topic = f"test.check.{uuid.uuid4().hex[:8]}"
    ensure_topics(infra.kafka, [topic], partitions=1)
    assert run_checks(infra.urls, limits=NOW, kafka=infra.kafka,
                      dlq_topics=[topic]) == []  # fmt: skip
    publish(infra.kafka, dlq(topic), [b"{not json"],
            [("dlq.error", b"unreadable"), ("dlq.error_type", b"ValueError")])  # fmt: skip
    violations = run_checks(infra.urls, limits=NOW, kafka=infra.kafka,
                            dlq_topics=[topic])  # fmt: skip
    assert [(v.invariant, v.ids) for v in violations] == [
        ("dlq-empty", (f"{dlq(topic)}@0:0",))
    ]
    assert "ValueError unreadable" in violations[0].detail


def test_money_the_bank_settled_for_a_failed_payment_is_reported(
    infra, world, purchases
):
    pending = purchases[OrderStatus.PAYMENT_PENDING]
    world.sql("payment", "UPDATE payments SET status = 'FAILED' WHERE id = :id",
              id=pending["payment"])  # fmt: skip
    world.sql("bank", "UPDATE transactions SET status = 'SUCCEEDED' WHERE id = :id",
              id=pending["transaction"])  # fmt: skip
    ids = {pending["payment"], pending["transaction"]}
    assert found(infra, "bank-settled") == [ids, ids]  # the line and the totals


def test_a_succeeded_payment_the_bank_refunded_is_reported(infra, world, purchases):
    paid = purchases[OrderStatus.PAID]
    world.sql("bank", "UPDATE transactions SET status = 'REFUNDED' WHERE id = :id",
              id=paid["transaction"])  # fmt: skip
    ids = {paid["payment"], paid["transaction"]}
    assert found(infra, "bank-settled") == [ids, ids]


def test_a_refunded_late_success_balances(infra, world, purchases):
    pending = purchases[OrderStatus.PAYMENT_PENDING]
    world.sql("payment", "UPDATE payments SET status = 'EXPIRED', refunded_at = now() "
              "WHERE id = :id", id=pending["payment"])  # fmt: skip
    world.sql("bank", "UPDATE transactions SET status = 'REFUNDED' WHERE id = :id",
              id=pending["transaction"])  # fmt: skip
    assert found(infra, "bank-settled") == []


def test_a_discrepancy_younger_than_the_grace_is_in_flight(infra, world, purchases):
    paid = purchases[OrderStatus.PAID]
    world.sql("storage", "UPDATE reservations SET status = 'RESERVED' WHERE id = :id",
              id=paid["reservation"])  # fmt: skip
    assert found(infra, "reservation-sold", Limits(grace=120)) == []
    world.sql("orders", "UPDATE orders SET updated_at = now() - interval '3 minutes'"
              " WHERE id = :id", id=paid["order"])  # fmt: skip
    world.sql("storage", "UPDATE reservations SET updated_at = now() - "
              "interval '3 minutes' WHERE id = :id", id=paid["reservation"])  # fmt: skip
    ids = {paid["order"], paid["reservation"]}
    assert found(infra, "reservation-sold", Limits(grace=120)) == [ids]


@pytest.fixture
def environ(infra, monkeypatch):
    """The launcher's variables pointing `chomik check` at the test databases."""
    for name, url in infra.urls.items():
        monkeypatch.setenv(f"{name.upper()}_DATABASE_URL", url)


def test_the_command_exits_0_when_every_invariant_holds(
    infra, environ, purchases, capsys
):
    assert main(["check", "--grace", "0", "--no-dlq"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [f"{len(INVARIANTS)} invariants checked, 0 violation(s)"]


def test_the_command_prints_each_violation_and_exits_1(
    infra, world, environ, purchases, capsys
):
    paid = purchases[OrderStatus.PAID]
    world.sql("payment", "UPDATE payments SET status = 'FAILED' WHERE id = :id",
              id=paid["payment"])  # fmt: skip
    assert main(["check", "--grace", "0", "--no-dlq"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert any(
        line.startswith("order-paid-once: ") and f"[{paid['order']}]" in line
        for line in lines
    ), lines
    assert lines[-1].startswith(f"{len(INVARIANTS)} invariants checked, ")
    assert main(["check", "--grace", "3600", "--no-dlq"]) == 0


def test_the_command_speaks_json(infra, world, environ, purchases, capsys):
    world.sql("storage", "UPDATE products SET sold = sold + 1 WHERE id = :id",
              id=purchases[OrderStatus.SHIPPED]["product"])  # fmt: skip
    assert main(["check", "--json", "--no-dlq"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    assert len(report["checked"]) == len(INVARIANTS)
    assert report["violations"] == [{
        "invariant": "stock-conserved",
        "detail": report["violations"][0]["detail"],
        "ids": [purchases[OrderStatus.SHIPPED]["product"]],
    }]  # fmt: skip


def test_the_command_reports_a_database_it_cannot_read(monkeypatch, capsys):
    monkeypatch.setenv("EMBEDDED_PG_PORT", "1")  # no cluster: nothing to read
    assert main(["check", "--no-dlq"]) == 1
    assert "could not be read" in capsys.readouterr().err
