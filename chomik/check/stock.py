"""Stock's invariants: counts within bounds, units conserved, reservations matching orders.

Read by SQL from the storage and orders databases, like every invariant here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping

from sqlalchemy.engine import RowMapping

from chomik.check.base import Limits, Snapshots, Violation
from chomik.check.purchases import AGE, HOLDING, PAID, Rows, orders_by_id, young


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
    orders, reservations = orders_by_id(snap), _reservations(snap)
    placing = _placing(snap, limits)
    for order_id, reservation in reservations.items():
        order = orders.get(order_id)
        if reservation["status"] != "RESERVED" or (
            order and order["status"] in HOLDING
        ):
            continue
        if order is None and order_id in placing or young(limits, reservation, order):
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
        if holder["status"] not in HOLDING or open_ or young(limits, holder, held):
            continue
        state = "none" if held is None else held["status"]
        yield Violation(
            "reservation-held",
            f"order {order_id} is {holder['status']}, but its reservation is {state}",
            (order_id,) if held is None else (order_id, held["id"]),
        )


def reservation_sold(snap: Snapshots, limits: Limits) -> Iterator[Violation]:
    """A reservation is COMMITTED (its units sold) ⇔ its order is paid."""
    orders, reservations = orders_by_id(snap), _reservations(snap)
    for order_id, reservation in reservations.items():
        order = orders.get(order_id)
        sold = reservation["status"] == "COMMITTED"
        paid = order is not None and order["status"] in PAID
        if sold == paid or young(limits, reservation, order):
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
        if missing and not young(limits, order):
            yield Violation(
                "reservation-sold",
                f"order {order_id} is {order['status']} without a reservation",
                (order_id,),
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
