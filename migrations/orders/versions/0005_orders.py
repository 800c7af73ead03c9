"""Orders, their lines and status history, and placement attempts.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29

`orders`, `order_items` and `order_status_history` are defined once in
`clients.orders.define_order_tables` (payment's two-phase branch writes them
through `move_order`); `placement_attempts` is the orders service's own.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

STATUS = sa.String(length=20)


def _timestamp(name: str, *, nullable: bool = False, now: bool = False) -> sa.Column:
    return sa.Column(
        name,
        sa.DateTime(timezone=True),
        server_default=sa.text("now()") if now else None,
        nullable=nullable,
    )


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("buyer_id", sa.Uuid(), nullable=False),
        sa.Column("status", STATUS, nullable=False),
        sa.Column("address_id", sa.Uuid(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("total", sa.Numeric(precision=18, scale=2), nullable=False),
        _timestamp("expires_at"),
        _timestamp("next_check_at", nullable=True),
        sa.Column("claim_token", sa.Uuid(), nullable=True),
        _timestamp("created_at", now=True),
        _timestamp("updated_at", now=True),
        sa.CheckConstraint("total >= 0", name=op.f("ck_orders_total_not_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
    )
    op.create_index("ix_orders_buyer_id", "orders", ["buyer_id", "created_at"])
    op.create_index("ix_orders_created_at", "orders", ["created_at", "id"])
    op.create_index(
        "ix_orders_next_check_at",
        "orders",
        ["next_check_at"],
        postgresql_where=sa.text("next_check_at IS NOT NULL"),
    )
    op.create_table(
        "order_items",
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("product_id", sa.Uuid(), nullable=False),
        sa.Column("seller_id", sa.Uuid(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.CheckConstraint(
            "quantity > 0", name=op.f("ck_order_items_quantity_positive")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
            name=op.f("fk_order_items_order_id_orders"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("order_id", "product_id", name=op.f("pk_order_items")),
    )
    op.create_index(
        "ix_order_items_seller_id", "order_items", ["seller_id", "order_id"]
    )
    op.create_table(
        "order_status_history",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("from_status", STATUS, nullable=True),
        sa.Column("to_status", STATUS, nullable=False),
        sa.Column("reason", sa.String(length=200), server_default="", nullable=False),
        _timestamp("at", now=True),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
            name=op.f("fk_order_status_history_order_id_orders"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_status_history")),
    )
    op.create_index(
        "ix_order_status_history_order_id", "order_status_history", ["order_id", "id"]
    )
    op.create_table(
        "placement_attempts",
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("buyer_id", sa.Uuid(), nullable=False),
        _timestamp("next_check_at", nullable=True),
        sa.Column("claim_token", sa.Uuid(), nullable=True),
        _timestamp("created_at", now=True),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_placement_attempts")),
    )
    op.create_index(
        "ix_placement_attempts_next_check_at", "placement_attempts", ["next_check_at"]
    )


def downgrade() -> None:
    op.drop_table("placement_attempts")
    op.drop_table("order_status_history")
    op.drop_table("order_items")
    op.drop_table("orders")
