"""The purchase's invariants: orders against payments, shipments, stock and the bank.

They read the tables of the orders, payment, delivery, storage and bank databases
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


def _young(limits: Limits, *rows: RowMapping | None) -> bool:
    """Whether any row changed within the grace: its discrepancy may be in flight."""
    return any(row is not None and row["age"] < limits.grace for row in rows)


def _orders(snap: Snapshots) -> dict[str, RowMapping]:
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
    orders = _orders(snap)
    settled = _by_order(_settled_payments(snap))
    for order_id, order in orders.items():
        payments = settled.pop(order_id, [])
        paid = order["status"] in PAID
        if len(payments) == (1 if paid else 0) or _young(limits, order, *payments):
            continue
        count = len(payments)
        yield Violation(
            "order-paid-once",
            f"order {order_id} is {order['status']} with {count} succeeded payment(s)"
            + ("" if paid else ", but it is not paid"),
            (order_id, *_ids(payments)),
        )
    for order_id, payments in settled.items():
        if not _young(limits, *payments):
            yield Violation(
                "order-paid-once",
                f"payment(s) succeeded for order {order_id}, which does not exist",
                (order_id, *_ids(payments)),
            )


def order_shipped_once(snap: Snapshots, limits: Limits) -> Iterator[Violation]:
    """SHIPPED, DELIVERED ⇔ one shipment, whose status the order follows; PAID gets one."""
    orders = _orders(snap)
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
        if problem and not _young(limits, order, shipment):
            ids = (order_id,) if shipment is None else (order_id, shipment["id"])
            yield Violation("order-shipped-once", f"order {order_id} {problem}", ids)
    for order_id, shipment in shipments.items():
        if not _young(limits, shipment):
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


def stock_within_bounds(snap: Snapshots, limits: Limits) -> Iterator[Violation]:
    """No product has reserved > quantity, or a negative count."""
    for row in snap.rows(
        "storage",
        "SELECT id::text AS id, quantity, reserved, sold FROM products "
        "WHERE reserved > quantity OR quantity < 0 OR reserved < 0 OR sold < 0 "
        "ORDER BY id",
    ):
        yield Violation(
            "stock-within-bounds",
            f"product {row['id']} has quantity {row['quantity']}, reserved "
            f"{row['reserved']}, sold {row['sold']}",
            (row["id"],),
        )


def stock_conserved(snap: Snapshots, limits: Limits) -> Iterator[Violation]:
    """Every unit that left a product's counts is in a reservation: none made or lost.

    Storage keeps no ledger of the seller's own changes to `quantity`; what it does
    record is every unit a buyer took. So `reserved` equals the units of the open
    (RESERVED) reservations and `sold` the units of the COMMITTED ones: a sale moves
    units from `quantity` to `sold` and nowhere else, so `quantity + sold` changes
    only by the seller's edits.
    """
    for row in snap.rows(
        "storage",
        """
        SELECT p.id::text AS id, p.reserved, p.sold,
               COALESCE(SUM(i.quantity) FILTER (WHERE r.status = 'RESERVED'), 0)
                   AS held,
               COALESCE(SUM(i.quantity) FILTER (WHERE r.status = 'COMMITTED'), 0)
                   AS committed
        FROM products p
        LEFT JOIN reservation_items i ON i.product_id = p.id
        LEFT JOIN reservations r ON r.id = i.reservation_id
        GROUP BY p.id
        HAVING p.reserved <> COALESCE(SUM(i.quantity)
                   FILTER (WHERE r.status = 'RESERVED'), 0)
            OR p.sold <> COALESCE(SUM(i.quantity)
                   FILTER (WHERE r.status = 'COMMITTED'), 0)
        ORDER BY p.id
        """,
    ):
        yield Violation(
            "stock-conserved",
            f"product {row['id']} counts reserved {row['reserved']} and sold "
            f"{row['sold']}, its reservations hold {row['held']} and sold "
            f"{row['committed']}",
            (row["id"],),
        )


def _reservations(snap: Snapshots) -> dict[str, RowMapping]:
    sql = (
        "SELECT id::text AS id, order_id::text AS order_id, status, "
        f"{AGE.format('updated_at')} FROM reservations"
    )
    return {row["order_id"]: row for row in snap.rows("storage", sql)}


def _placing(snap: Snapshots, limits: Limits) -> set[str]:
    """Orders being placed: their reservation exists before the order does.

    A placement that died leaves its attempt, due when the order would have
    expired; its reservation is released then, so it is in flight until that time
    plus the grace.
    """
    rows = snap.rows(
        "orders",
        "SELECT order_id::text AS id FROM placement_attempts "
        "WHERE next_check_at > now() - make_interval(secs => :grace)",
        grace=limits.grace,
    )
    return {row["id"] for row in rows}


def reservation_held(snap: Snapshots, limits: Limits) -> Iterator[Violation]:
    """Every open reservation belongs to an order that holds stock, and each has one."""
    orders, reservations = _orders(snap), _reservations(snap)
    placing = _placing(snap, limits)
    for order_id, reservation in reservations.items():
        order = orders.get(order_id)
        if reservation["status"] != "RESERVED" or (
            order and order["status"] in HOLDING
        ):
            continue
        if order is None and order_id in placing or _young(limits, reservation, order):
            continue
        state = "does not exist" if order is None else f"is {order['status']}"
        yield Violation(
            "reservation-held",
            f"reservation {reservation['id']} is open, but its order {order_id} {state}",
            (order_id, reservation["id"]),
        )
    for order_id, holder in orders.items():
        held = reservations.get(order_id)
        open_ = held is not None and held["status"] == "RESERVED"
        if holder["status"] not in HOLDING or open_ or _young(limits, holder, held):
            continue
        state = "none" if held is None else held["status"]
        yield Violation(
            "reservation-held",
            f"order {order_id} is {holder['status']}, but its reservation is {state}",
            (order_id,) if held is None else (order_id, held["id"]),
        )


def reservation_sold(snap: Snapshots, limits: Limits) -> Iterator[Violation]:
    """A reservation is COMMITTED (its units sold) ⇔ its order is paid."""
    orders, reservations = _orders(snap), _reservations(snap)
    for order_id, reservation in reservations.items():
        order = orders.get(order_id)
        sold = reservation["status"] == "COMMITTED"
        paid = order is not None and order["status"] in PAID
        if sold == paid or _young(limits, reservation, order):
            continue
        if sold:
            state = "does not exist" if order is None else f"is {order['status']}"
            detail = f"reservation {reservation['id']} is sold, but order {order_id} "
            detail += state
        else:
            assert order is not None
            detail = f"order {order_id} is {order['status']}, but its reservation "
            detail += f"{reservation['id']} is {reservation['status']}"
        yield Violation("reservation-sold", detail, (order_id, reservation["id"]))
    for order_id, order in orders.items():
        missing = order["status"] in PAID and order_id not in reservations
        if missing and not _young(limits, order):
            yield Violation(
                "reservation-sold",
                f"order {order_id} is {order['status']} without a reservation",
                (order_id,),
            )


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
        ) or _young(limits, transaction, payment):
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
        if (transaction is not None and _settled(transaction)) or _young(
            limits, payment, transaction
        ):
            continue
        state = "missing" if transaction is None else transaction["status"]
        yield Violation(
            "bank-settled",
            f"payment {payment['id']} SUCCEEDED, but its bank transaction is {state}",
            (payment["id"], payment["transaction_id"] or "-"),
        )


def reservation_lines(snap: Snapshots, limits: Limits) -> Iterator[Violation]:
    """An order's lines are its reservation's: the same products, the same units.

    With `reservation-sold`, the units storage counts as sold are exactly the units
    of the paid orders.
    """
    sql = (
        "SELECT {order}::text AS order_id, product_id::text AS product_id, "
        "quantity FROM {table}"
    )
    ordered = _lines(
        snap.rows("orders", sql.format(order="order_id", table="order_items"))
    )
    held = _lines(
        snap.rows(
            "storage",
            sql.format(
                order="r.order_id",
                table="reservation_items i JOIN reservations r "
                "ON r.id = i.reservation_id",
            ),
        )
    )
    for order_id in sorted(ordered.keys() & held.keys()):
        if ordered[order_id] != held[order_id]:
            yield Violation(
                "reservation-lines",
                f"order {order_id} has lines {_spell(ordered[order_id])}, its "
                f"reservation {_spell(held[order_id])}",
                (order_id,),
            )


def _lines(rows: Rows) -> dict[str, dict[str, int]]:
    lines: dict[str, dict[str, int]] = defaultdict(dict)
    for row in rows:
        lines[row["order_id"]][row["product_id"]] = row["quantity"]
    return lines


def _spell(lines: Mapping[str, int]) -> str:
    return ", ".join(f"{units} × {product}" for product, units in sorted(lines.items()))
