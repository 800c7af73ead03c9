"""The purchase's invariants: orders against payments, shipments and the bank.

They read the tables of the orders, payment, delivery and bank databases
by SQL, as an operator would: the kit imports no app, and an audit that went
through the apps' own code would share their mistakes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from decimal import Decimal

from sqlalchemy.engine import RowMapping

from chomik.check.base import Limits, Snapshots, Violation

# Order statuses (the orders contract, API.md), by what they promise.
PAID = ("PAID", "SHIPPED", "DELIVERED")  # one settled payment, stock sold
HOLDING = ("AWAITING_PAYMENT", "PAYMENT_PENDING", "PAYMENT_FAILED")  # stock reserved
# The order status a shipment's status leads to, and the order of both.
SHIPMENT_TO_ORDER = {
    "CREATED": "PAID",
    "IN_TRANSIT": "SHIPPED",
    "DELIVERED": "DELIVERED",
}
RANK = {"PAID": 0, "SHIPPED": 1, "DELIVERED": 2}

AGE = "EXTRACT(EPOCH FROM now() - {})::float8 AS age"
Rows = Sequence[RowMapping]


def young(limits: Limits, *rows: RowMapping | None) -> bool:
    """Whether any row changed within the grace: its discrepancy may be in flight."""
    return any(row is not None and row["age"] < limits.grace for row in rows)


def orders_by_id(snap: Snapshots) -> dict[str, RowMapping]:
    sql = f"SELECT id::text AS id, status, {AGE.format('updated_at')} FROM orders"
    return {row["id"]: row for row in snap.rows("orders", sql)}


def _by_order(rows: Iterable[RowMapping]) -> dict[str, list[RowMapping]]:
    grouped: dict[str, list[RowMapping]] = defaultdict(list)
    for row in rows:
        grouped[row["order_id"]].append(row)
    return grouped


def _settled_payments(snap: Snapshots) -> Rows:
    return snap.rows(
        "payment",
        f"SELECT id::text AS id, order_id::text AS order_id, amount, "
        f"bank_transaction_id::text AS transaction_id, {AGE.format('updated_at')} "
        "FROM payments WHERE status = 'SUCCEEDED' AND refunded_at IS NULL",
    )


def _ids(rows: Iterable[RowMapping]) -> list[str]:
    return [row["id"] for row in rows]


def order_paid_once(snap: Snapshots, limits: Limits) -> Iterator[Violation]:
    """PAID, SHIPPED, DELIVERED ⇔ exactly one SUCCEEDED payment, not refunded."""
    orders = orders_by_id(snap)
    settled = _by_order(_settled_payments(snap))
    for order_id, order in orders.items():
        payments = settled.pop(order_id, [])
        paid = order["status"] in PAID
        if len(payments) == (1 if paid else 0) or young(limits, order, *payments):
            continue
        count = len(payments)
        yield Violation(
            "order-paid-once",
            f"order {order_id} is {order['status']} with {count} succeeded payment(s)"
            + ("" if paid else ", but it is not paid"),
            (order_id, *_ids(payments)),
        )
    for order_id, payments in settled.items():
        if not young(limits, *payments):
            yield Violation(
                "order-paid-once",
                f"payment(s) succeeded for order {order_id}, which does not exist",
                (order_id, *_ids(payments)),
            )


def order_shipped_once(snap: Snapshots, limits: Limits) -> Iterator[Violation]:
    """SHIPPED, DELIVERED ⇔ one shipment, whose status the order follows; PAID gets one."""
    orders = orders_by_id(snap)
    shipments = {
        row["order_id"]: row
        for row in snap.rows(
            "delivery",
            f"SELECT id::text AS id, order_id::text AS order_id, status, "
            f"{AGE.format('updated_at')} FROM shipments",
        )
    }
    for order_id, order in orders.items():
        shipment = shipments.pop(order_id, None)
        problem = _shipping_problem(order, shipment)
        if problem and not young(limits, order, shipment):
            ids = (order_id,) if shipment is None else (order_id, shipment["id"])
            yield Violation("order-shipped-once", f"order {order_id} {problem}", ids)
    for order_id, shipment in shipments.items():
        if not young(limits, shipment):
            yield Violation(
                "order-shipped-once",
                f"shipment {shipment['id']} is for order {order_id}, which does not "
                "exist",
                (order_id, shipment["id"]),
            )


def _shipping_problem(order: RowMapping, shipment: RowMapping | None) -> str | None:
    status = order["status"]
    if shipment is None:
        return f"is {status} without a shipment" if status in PAID else None
    if status not in PAID:
        return f"is {status} but has shipment {shipment['id']}"
    expected = SHIPMENT_TO_ORDER.get(shipment["status"])
    if expected is None or RANK[status] != RANK[expected]:
        return f"is {status} but its shipment is {shipment['status']}"
    return None


def bank_settled(snap: Snapshots, limits: Limits) -> Iterator[Violation]:
    """The bank's settled money equals payment's SUCCEEDED payments (refunds left out).

    Matched one by one: a bank transaction SUCCEEDED ⇔ its payment (the reference)
    SUCCEEDED, not refunded, for the same amount. A payment that expired and whose
    late success was refunded is REFUNDED at the bank and counts on neither side.
    """
    payments = {
        row["id"]: row
        for row in snap.rows(
            "payment",
            "SELECT id::text AS id, status, amount, refunded_at IS NOT NULL AS "
            "refunded, bank_transaction_id::text AS transaction_id, "
            f"{AGE.format('updated_at')} FROM payments",
        )
    }
    transactions = _merchant_transactions(snap, limits, payments)
    found = [
        *_unmatched_at_bank(transactions, payments, limits),
        *_unmatched_in_payment(transactions, payments, limits),
    ]
    yield from found
    bank = sum((t["amount"] for t in transactions.values() if _settled(t)), Decimal(0))
    ours = sum((p["amount"] for p in payments.values() if _paid(p)), Decimal(0))
    if found and bank != ours:
        yield Violation(
            "bank-settled",
            f"the bank settled {bank} in all, payment counts {ours} succeeded",
            tuple(sorted({i for v in found for i in v.ids})),
        )


def _settled(transaction: RowMapping) -> bool:
    return bool(transaction["status"] == "SUCCEEDED")


def _paid(payment: RowMapping | None) -> bool:
    return (
        payment is not None
        and payment["status"] == "SUCCEEDED"
        and not (payment["refunded"])
    )


def _merchant_transactions(
    snap: Snapshots, limits: Limits, payments: Mapping[str, RowMapping]
) -> dict[str, RowMapping]:
    """The bank's transactions of the merchant account payments are paid into.

    That account is `limits.merchant_account_id`, else every account a payment's
    bank transaction belongs to.
    """
    rows = snap.rows(
        "bank",
        "SELECT id::text AS id, reference, status, amount, "
        f"merchant_account_id::text AS merchant, {AGE.format('updated_at')} "
        "FROM transactions",
    )
    by_id = {row["id"]: row for row in rows}
    if limits.merchant_account_id is not None:
        merchants = {limits.merchant_account_id}
    else:
        ours = {p["transaction_id"] for p in payments.values()}
        merchants = {row["merchant"] for row in rows if row["id"] in ours}
    return {i: row for i, row in by_id.items() if row["merchant"] in merchants}


def _unmatched_at_bank(
    transactions: Mapping[str, RowMapping],
    payments: Mapping[str, RowMapping],
    limits: Limits,
) -> Iterator[Violation]:
    for transaction in transactions.values():
        if not _settled(transaction):
            continue
        payment = payments.get(transaction["reference"])
        if (
            _paid(payment)
            and payment is not None
            and payment["transaction_id"] == transaction["id"]
            and payment["amount"] == transaction["amount"]
        ) or young(limits, transaction, payment):
            continue
        if payment is None:
            state = "no payment"
        elif _paid(payment):
            state = f"payment {payment['id']} SUCCEEDED for {payment['amount']}"
        else:
            refunded = " (refunded)" if payment["refunded"] else ""
            state = f"payment {payment['id']} {payment['status']}{refunded}"
        yield Violation(
            "bank-settled",
            f"bank transaction {transaction['id']} SUCCEEDED for "
            f"{transaction['amount']}, but {state}",
            (transaction["reference"], transaction["id"]),
        )


def _unmatched_in_payment(
    transactions: Mapping[str, RowMapping],
    payments: Mapping[str, RowMapping],
    limits: Limits,
) -> Iterator[Violation]:
    for payment in payments.values():
        if not _paid(payment):
            continue
        transaction = transactions.get(payment["transaction_id"] or "")
        if (transaction is not None and _settled(transaction)) or young(
            limits, payment, transaction
        ):
            continue
        state = "missing" if transaction is None else transaction["status"]
        yield Violation(
            "bank-settled",
            f"payment {payment['id']} SUCCEEDED, but its bank transaction is {state}",
            (payment["id"], payment["transaction_id"] or "-"),
        )
