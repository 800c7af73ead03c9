"""The catalog: products with stock, and stock reservations per order.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

The `q` filter matches substrings of title, brand and model. With `pg_trgm`
(PostgreSQL contrib) a trigram GIN index over the lowered text serves it; without
the extension a plain btree over the same expression is created instead (prefix
matches only). The index is not part of the models, so the choice never drifts.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SEARCH_INDEX = "ix_products_search"
SEARCH_TEXT = "lower(title || ' ' || brand || ' ' || model)"


def upgrade() -> None:
    op.create_table(
        "products",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("seller_id", sa.Uuid(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("brand", sa.String(length=100), nullable=False),
        sa.Column("model", sa.String(length=100), nullable=False),
        sa.Column("size", sa.String(length=20), nullable=False),
        sa.Column("color", sa.String(length=50), nullable=False),
        sa.Column("condition", sa.String(length=8), nullable=False),
        sa.Column("price", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("reserved", sa.Integer(), server_default="0", nullable=False),
        sa.Column("sold", sa.Integer(), server_default="0", nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.CheckConstraint(
            "quantity >= 0", name=op.f("ck_products_quantity_not_negative")
        ),
        sa.CheckConstraint(
            "reserved >= 0", name=op.f("ck_products_reserved_not_negative")
        ),
        sa.CheckConstraint(
            "reserved <= quantity", name=op.f("ck_products_reserved_within_quantity")
        ),
        sa.CheckConstraint("sold >= 0", name=op.f("ck_products_sold_not_negative")),
        sa.CheckConstraint("price >= 0", name=op.f("ck_products_price_not_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_products")),
    )
    op.create_index("ix_products_brand", "products", ["brand"])
    op.create_index("ix_products_size", "products", ["size"])
    op.create_index("ix_products_color", "products", ["color"])
    op.create_index("ix_products_condition", "products", ["condition"])
    op.create_index("ix_products_price", "products", ["price", "id"])
    op.create_index("ix_products_created_at", "products", ["created_at", "id"])
    op.create_index("ix_products_seller_id", "products", ["seller_id", "created_at"])
    _create_search_index()

    op.create_table(
        "reservations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reservations")),
        sa.UniqueConstraint("order_id", name=op.f("uq_reservations_order_id")),
    )
    op.create_table(
        "reservation_items",
        sa.Column("reservation_id", sa.Uuid(), nullable=False),
        sa.Column("product_id", sa.Uuid(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("unit_price", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.CheckConstraint(
            "quantity > 0", name=op.f("ck_reservation_items_quantity_positive")
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["products.id"],
            name=op.f("fk_reservation_items_product_id_products"),
        ),
        sa.ForeignKeyConstraint(
            ["reservation_id"],
            ["reservations.id"],
            ondelete="CASCADE",
            name=op.f("fk_reservation_items_reservation_id_reservations"),
        ),
        sa.PrimaryKeyConstraint(
            "reservation_id", "product_id", name=op.f("pk_reservation_items")
        ),
    )
    op.create_index(
        "ix_reservation_items_product_id", "reservation_items", ["product_id"]
    )


def _create_search_index() -> None:
    bind = op.get_bind()
    has_trgm = bind.execute(
        sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")
    ).first()
    if has_trgm:
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.execute(
            f"CREATE INDEX {SEARCH_INDEX} ON products "
            f"USING gin (({SEARCH_TEXT}) gin_trgm_ops)"
        )
    else:
        op.execute(f"CREATE INDEX {SEARCH_INDEX} ON products (({SEARCH_TEXT}))")


def downgrade() -> None:
    op.drop_index("ix_reservation_items_product_id", table_name="reservation_items")
    op.drop_table("reservation_items")
    op.drop_table("reservations")
    op.execute(f"DROP INDEX IF EXISTS {SEARCH_INDEX}")
    for name in (
        "seller_id",
        "created_at",
        "price",
        "condition",
        "color",
        "size",
        "brand",
    ):
        op.drop_index(f"ix_products_{name}", table_name="products")
    op.drop_table("products")
    # pg_trgm stays: other schemas of the database may use it.
