"""`chomik check`: the invariants that tie every database together, audited read-only.

`audit(urls)` reads each database in one read-only snapshot and checks every
invariant whose databases it was given (and the dead-letter topics when given a
broker); `run_checks(urls)` returns only the violations. docs/operations.md says
what each invariant means and what to do when one fails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from chomik.check import plumbing, purchases, stock
from chomik.check.base import Limits, Snapshots, Violation, snapshots

__all__ = [
    "INVARIANTS",
    "Invariant",
    "Limits",
    "Report",
    "Violation",
    "audit",
    "run_checks",
]

DLQ_INVARIANT = "dlq-empty"


@dataclass(frozen=True)
class Invariant:
    """One invariant: its stable name, the databases it reads, its check."""

    name: str
    databases: tuple[str, ...]
    check: Callable[[Snapshots, Limits], Iterator[Violation]]


INVARIANTS: tuple[Invariant, ...] = (
    Invariant("order-paid-once", ("orders", "payment"), purchases.order_paid_once),
    Invariant(
        "order-shipped-once", ("orders", "delivery"), purchases.order_shipped_once
    ),
    Invariant("stock-within-bounds", ("storage",), stock.stock_within_bounds),
    Invariant("stock-conserved", ("storage",), stock.stock_conserved),
    Invariant("reservation-held", ("orders", "storage"), stock.reservation_held),
    Invariant("reservation-sold", ("orders", "storage"), stock.reservation_sold),
    Invariant("reservation-lines", ("orders", "storage"), stock.reservation_lines),
    Invariant("bank-settled", ("payment", "bank"), purchases.bank_settled),
    Invariant("no-stale-prepared", (), plumbing.no_stale_prepared),
    Invariant("outbox-drained", (), plumbing.outbox_drained),
    Invariant("outbox-none-parked", (), plumbing.outbox_none_parked),
)


@dataclass(frozen=True)
class Report:
    """Which invariants were checked, and every violation found."""

    checked: tuple[str, ...]
    violations: tuple[Violation, ...]

    @property
    def ok(self) -> bool:
        return not self.violations


def audit(
    urls: Mapping[str, str],
    *,
    limits: Limits | None = None,
    kafka: str | None = None,
    dlq_topics: Sequence[str] | None = None,
) -> Report:
    """Check every invariant the given databases (and broker) allow; nothing is written.

    `urls`: database name (`orders`, `payment`, ...) → SQLAlchemy URL. The
    dead-letter topics are read only when `kafka` names a broker: those of
    `dlq_topics` (source topic names), or every `<topic>.dlq` there.
    """
    limits = limits or Limits()
    chosen = [i for i in INVARIANTS if all(db in urls for db in i.databases)]
    found: list[Violation] = []
    with snapshots(urls) as snap:
        for invariant in chosen:
            found.extend(invariant.check(snap, limits))
    checked = [i.name for i in chosen]
    if kafka is not None:
        checked.append(DLQ_INVARIANT)
        found.extend(plumbing.dlq_empty(kafka, dlq_topics))
    return Report(tuple(checked), tuple(found))


def run_checks(
    urls: Mapping[str, str],
    *,
    limits: Limits | None = None,
    kafka: str | None = None,
    dlq_topics: Sequence[str] | None = None,
) -> list[Violation]:
    """Every violated invariant (an empty list when all hold); see `audit`."""
    report = audit(urls, limits=limits, kafka=kafka, dlq_topics=dlq_topics)
    return list(report.violations)
