"""The decision log: one COMMIT or ABORT row per coordinated transaction.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "txcoord_decision",
        sa.Column("tx_id", sa.String(64), nullable=False),
        sa.Column("decision", sa.String(6), nullable=False),
        sa.Column("decided_by", sa.String(200), nullable=False),
        sa.Column("participants", sa.Text(), nullable=True),
        sa.Column(
            "decided_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "decision IN ('COMMIT', 'ABORT')", name="ck_txcoord_decision_decision"
        ),
        sa.PrimaryKeyConstraint("tx_id", name="pk_txcoord_decision"),
        comment="txcoord decisions: the first row for a transaction id decides it",
    )
    op.create_index(
        "ix_txcoord_decision_pending",
        "txcoord_decision",
        ["decided_at"],
        postgresql_where=sa.text("done_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_txcoord_decision_pending", table_name="txcoord_decision")
    op.drop_table("txcoord_decision")
