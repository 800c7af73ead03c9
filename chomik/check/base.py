"""What every invariant works with: the violation it reports, its limits, the snapshots.

Each database is read in one `REPEATABLE READ READ ONLY` transaction, so every
query of one database sees the same instant, and nothing can be written. The
snapshots of all databases are taken one after another in a few milliseconds; what
moves between databases in that time is covered by the grace (see `Limits`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping


@dataclass(frozen=True)
class Violation:
    """One invariant found false: its stable name, a sentence, the rows involved."""

    invariant: str
    detail: str
    ids: tuple[str, ...] = ()

    def line(self) -> str:
        """One line for people: `<invariant>: <detail> [ids]`."""
        ids = f" [{', '.join(self.ids)}]" if self.ids else ""
        return f"{self.invariant}: {self.detail}{ids}"

    def as_dict(self) -> dict[str, Any]:
        return {"invariant": self.invariant, "detail": self.detail, "ids": [*self.ids]}


@dataclass(frozen=True, kw_only=True)
class Limits:
    """How old a discrepancy must be to count, and whose money is audited.

    `grace`: seconds a row may disagree with another database while the event or
    callback that reconciles them is on its way (an order PAID whose reservation
    storage has not committed yet, a bank success whose callback is not applied
    yet). A discrepancy is reported only when every row involved is older.
    """

    grace: float = 120.0
    outbox_age: float = 60.0
    txcoord_timeout: float = 60.0
    merchant_account_id: str | None = None


@dataclass
class Snapshots:
    """One read-only, repeatable-read transaction per database, taken together."""

    connections: dict[str, Connection] = field(default_factory=dict)

    def has(self, *names: str) -> bool:
        return all(name in self.connections for name in names)

    def rows(self, name: str, sql: str, **params: Any) -> Sequence[RowMapping]:
        """Every row of `sql` in database `name`'s snapshot."""
        return self.connections[name].execute(sa.text(sql), params).mappings().all()

    def scalar(self, name: str, sql: str, **params: Any) -> Any:
        return self.connections[name].execute(sa.text(sql), params).scalar()


@contextlib.contextmanager
def snapshots(urls: Mapping[str, str]) -> Iterator[Snapshots]:
    """Open a read-only snapshot of every database in `urls`; roll all back after."""
    taken = Snapshots()
    with contextlib.ExitStack() as stack:
        for name, url in urls.items():
            engine = sa.create_engine(url, poolclass=sa.NullPool)
            stack.callback(engine.dispose)
            connection = stack.enter_context(engine.connect())
            stack.callback(connection.begin().rollback)
            # The first statement of the transaction: before any read fixes the
            # snapshot, so the whole transaction is one instant and cannot write.
            connection.execute(
                sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            )
            taken.connections[name] = connection
        # The snapshot is taken at the first query, not at BEGIN: take them all now,
        # back to back, rather than one by one as the invariants need them.
        for connection in taken.connections.values():
            connection.execute(sa.text("SELECT 1"))
        yield taken
