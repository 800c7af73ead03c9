"""The carrier: shipments, the callback queue and fault switches.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from chomik.db import UTCDateTime
from chomik.webhooks_migrations import downgrade_callbacks, upgrade_callbacks

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shipments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("merchant", sa.String(length=100), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=False),
        sa.Column("tracking_number", sa.String(length=20), nullable=False),
        sa.Column("address", postgresql.JSONB(), nullable=False),
        sa.Column("callback_url", sa.String(length=2000), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("next_step_at", UTCDateTime(), nullable=True),
        sa.Column("claim_token", sa.Uuid(), nullable=True),
        sa.Column(
            "created_at", UTCDateTime(), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column(
            "updated_at", UTCDateTime(), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shipments")),
        sa.UniqueConstraint(
            "merchant", "reference", name="uq_shipments_merchant_reference"
        ),
        sa.UniqueConstraint(
            "tracking_number", name=op.f("uq_shipments_tracking_number")
        ),
    )
    op.create_index("ix_shipments_next_step_at", "shipments", ["next_step_at"])
    upgrade_callbacks()


def downgrade() -> None:
    downgrade_callbacks()
    op.drop_index("ix_shipments_next_step_at", table_name="shipments")
    op.drop_table("shipments")
