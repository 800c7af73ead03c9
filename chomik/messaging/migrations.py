"""Alembic operations of the kit's messaging tables (`outbox_events`, `inbox_events`).

Written once here and called from each app's migration, so every database gets the
same schema. A later change to the tables gets a new pair of functions (version 2);
these stay as they are, like any applied migration.
"""

import sqlalchemy as sa
from alembic import op

from chomik.db import UTCDateTime


def upgrade_messaging() -> None:
    """Create the messaging tables (version 1): call from an app's migration."""
    op.create_table(
        "outbox_events",
        sa.Column("seq", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("topic", sa.String(length=200), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=200), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at", UTCDateTime(), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_outbox_events")),
        sa.UniqueConstraint("id", name=op.f("uq_outbox_events_id")),
    )
    op.create_index(
        "ix_outbox_events_pending",
        "outbox_events",
        ["seq"],
        postgresql_where=sa.text("sent_at IS NULL"),
    )
    op.create_index("ix_outbox_events_sent_at", "outbox_events", ["sent_at"])
    op.create_table(
        "inbox_events",
        sa.Column("consumer_group", sa.String(length=200), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("topic", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=200), nullable=False),
        sa.Column(
            "processed_at",
            UTCDateTime(),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint(
            "consumer_group", "event_id", name=op.f("pk_inbox_events")
        ),
    )
    op.create_index("ix_inbox_events_processed_at", "inbox_events", ["processed_at"])


def downgrade_messaging() -> None:
    """Drop the messaging tables (version 1)."""
    op.drop_index("ix_inbox_events_processed_at", table_name="inbox_events")
    op.drop_table("inbox_events")
    op.drop_index("ix_outbox_events_sent_at", table_name="outbox_events")
    op.drop_index("ix_outbox_events_pending", table_name="outbox_events")
    op.drop_table("outbox_events")
