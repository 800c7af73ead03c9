"""Orders not finished yet, by the address they ship to (an address in use stays).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "address_uses",
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("address_id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_address_uses")),
    )
    op.create_index(op.f("ix_address_uses_address_id"), "address_uses", ["address_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_address_uses_address_id"), table_name="address_uses")
    op.drop_table("address_uses")
