"""Decisions are pruned by age once no branch is prepared: `done_at` goes.

`done_at` was bookkeeping that no reader used, and its sweep could mark a
transaction done while a branch was still prepared; `prune_decisions` scans the
participants instead, and finds old rows through an index on `decided_at`.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_txcoord_decision_pending", table_name="txcoord_decision")
    op.drop_column("txcoord_decision", "done_at")
    op.create_index(
        "ix_txcoord_decision_decided_at", "txcoord_decision", ["decided_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_txcoord_decision_decided_at", table_name="txcoord_decision")
    op.add_column(
        "txcoord_decision",
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        "ix_txcoord_decision_pending",
        "txcoord_decision",
        ["decided_at"],
        postgresql_where=sa.text("done_at IS NULL"),
    )
