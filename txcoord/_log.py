"""The decision log: one row per coordinated transaction, COMMIT or ABORT.

The row's primary key is the transaction id, so the first writer wins: the
coordinator inserts COMMIT, recovery inserts ABORT, both with
``ON CONFLICT DO NOTHING``, and both then act on whichever row is there.
Rows are deleted only by ``prune_decisions``, once no branch is left prepared.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Sequence

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Engine

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

decisions = sa.Table(
    "txcoord_decision",
    metadata,
    sa.Column("tx_id", sa.String(64), primary_key=True),
    sa.Column("decision", sa.String(6), nullable=False),
    sa.Column("decided_by", sa.String(200), nullable=False),
    sa.Column("participants", sa.Text(), nullable=True),
    sa.Column(
        "decided_at",
        sa.DateTime(timezone=True),
        nullable=False,
        server_default=sa.text("now()"),
    ),
    sa.CheckConstraint("decision IN ('COMMIT', 'ABORT')", name="decision"),
    comment="txcoord decisions: the first row for a transaction id decides it",
)
sa.Index("ix_txcoord_decision_decided_at", decisions.c.decided_at)


# Built once: SQLAlchemy caches its compiled form (inline values would not be).
_INSERT_DECISION = (
    pg_insert(decisions)
    .on_conflict_do_nothing(index_elements=[decisions.c.tx_id])
    .returning(decisions.c.decision)
)


class Decision(enum.StrEnum):
    """The outcome of a coordinated transaction, as the log records it."""

    COMMIT = "COMMIT"
    ABORT = "ABORT"


class DecisionLog:
    """Reads and writes decision rows through the log database's engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def synchronous_commit(self) -> str:
        """The log database's synchronous_commit, as a new session sees it."""
        with self.engine.connect() as conn:
            return str(conn.execute(sa.text("SHOW synchronous_commit")).scalar_one())

    def decide(
        self,
        tx_id: str,
        decision: Decision,
        *,
        decided_by: str,
        participants: Sequence[str] | None = None,
    ) -> Decision:
        """Insert `decision` unless a row exists; return the decision in force.

        The insert commits before this returns, so a COMMIT returned here is
        durable (the log database runs with synchronous_commit on).
        """
        row = {
            "tx_id": tx_id,
            "decision": decision.value,
            "decided_by": decided_by[:200],
            "participants": ",".join(participants) if participants else None,
        }
        with self.engine.begin() as conn:
            won = conn.execute(_INSERT_DECISION, row).scalar_one_or_none()
            if won is None:  # a row is there: ours or the other side's
                won = conn.execute(
                    sa.select(decisions.c.decision).where(decisions.c.tx_id == tx_id)
                ).scalar_one()
        return Decision(won)

    def table_exists(self) -> bool:
        """Whether the decision table is there."""
        with self.engine.connect() as conn:
            return sa.inspect(conn).has_table(decisions.name)

    def get(self, tx_ids: Collection[str]) -> dict[str, Decision]:
        """The decisions logged for these transactions (absent: none yet)."""
        if not tx_ids:
            return {}
        query = sa.select(decisions.c.tx_id, decisions.c.decision).where(
            decisions.c.tx_id.in_(sorted(tx_ids))
        )
        with self.engine.connect() as conn:
            return {row.tx_id: Decision(row.decision) for row in conn.execute(query)}
