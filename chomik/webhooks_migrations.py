"""Alembic operations of the kit's `outgoing_callbacks` and `fault_switches` tables.

Written once here and called from each stand-in's migration, so every database gets
the same schema. A later change gets a new pair of functions (version 2).
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from chomik.db import UTCDateTime
from chomik.webhooks import CALLBACKS_TABLE, FAULTS_TABLE


def upgrade_callbacks() -> None:
    """Create `outgoing_callbacks` and `fault_switches` (version 1): from a migration."""
    op.create_table(
        CALLBACKS_TABLE,
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("body", JSONB(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("held", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("claim_token", sa.Uuid(), nullable=True),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "created_at", UTCDateTime(), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outgoing_callbacks")),
        sa.UniqueConstraint("event_id", name=op.f("uq_outgoing_callbacks_event_id")),
    )
    op.create_index(
        "ix_outgoing_callbacks_next_attempt_at", CALLBACKS_TABLE, ["next_attempt_at"]
    )
    op.create_index("ix_outgoing_callbacks_key", CALLBACKS_TABLE, ["key", "id"])
    op.create_table(
        FAULTS_TABLE,
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_fault_switches")),
    )


def downgrade_callbacks() -> None:
    """Drop `outgoing_callbacks` and `fault_switches` (version 1)."""
    op.drop_table(FAULTS_TABLE)
    op.drop_index("ix_outgoing_callbacks_key", table_name=CALLBACKS_TABLE)
    op.drop_index("ix_outgoing_callbacks_next_attempt_at", table_name=CALLBACKS_TABLE)
    op.drop_table(CALLBACKS_TABLE)
