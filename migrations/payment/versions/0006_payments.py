"""Payments: one attempt to pay an order at the bank each.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _timestamp(name: str, *, nullable: bool = False, now: bool = False) -> sa.Column:
    return sa.Column(
        name,
        sa.DateTime(timezone=True),
        server_default=sa.text("now()") if now else None,
        nullable=nullable,
    )


def upgrade() -> None:
    op.create_table(
        "payments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("buyer_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("amount", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("bank_transaction_id", sa.Uuid(), nullable=True),
        sa.Column("pay_url", sa.String(length=500), nullable=True),
        _timestamp("next_check_at", nullable=True),
        sa.Column("claim_token", sa.Uuid(), nullable=True),
        _timestamp("refunded_at", nullable=True),
        _timestamp("created_at", now=True),
        _timestamp("updated_at", now=True),
        sa.CheckConstraint("amount >= 0", name=op.f("ck_payments_amount_not_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
    )
    op.create_index(
        "uq_payments_open_order_id",
        "payments",
        ["order_id"],
        unique=True,
        postgresql_where=sa.text("status IN ('STARTING', 'PENDING')"),
    )
    op.create_index("ix_payments_order_id", "payments", ["order_id", "created_at"])
    op.create_index(
        "ix_payments_next_check_at",
        "payments",
        ["next_check_at"],
        postgresql_where=sa.text("next_check_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_payments_next_check_at", table_name="payments")
    op.drop_index("ix_payments_order_id", table_name="payments")
    op.drop_index("uq_payments_open_order_id", table_name="payments")
    op.drop_table("payments")
