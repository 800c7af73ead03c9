"""Alembic operations of the kit's messaging tables (`outbox_events`, `inbox_events`).

Written once here and called from each app's migration, so every database gets the
same schema. Each change to the tables is a new pair of functions; the earlier pairs
stay as they are, like any applied migration:

- version 1 (`upgrade_messaging`): the outbox and inbox tables;
- version 2 (`upgrade_messaging_v2`): parking of outbox rows the broker refuses for
  good (`refusals`, `last_error`, `parked_at`; the pending index skips parked rows).
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


def upgrade_messaging_v2() -> None:
    """Add outbox parking (version 2): call from an app's migration."""
    op.add_column(
        "outbox_events",
        sa.Column(
            "refusals", sa.Integer(), server_default=sa.text("0"), nullable=False
        ),
    )
    op.add_column("outbox_events", sa.Column("last_error", sa.Text(), nullable=True))
    op.add_column("outbox_events", sa.Column("parked_at", UTCDateTime(), nullable=True))
    op.drop_index("ix_outbox_events_pending", table_name="outbox_events")
    op.create_index(
        "ix_outbox_events_pending",
        "outbox_events",
        ["seq"],
        postgresql_where=sa.text("sent_at IS NULL AND parked_at IS NULL"),
    )
    op.create_index(
        "ix_outbox_events_parked",
        "outbox_events",
        ["seq"],
        postgresql_where=sa.text("parked_at IS NOT NULL"),
    )


def downgrade_messaging_v2() -> None:
    """Remove outbox parking (version 2); parked rows become pending again."""
    op.drop_index("ix_outbox_events_parked", table_name="outbox_events")
    op.drop_index("ix_outbox_events_pending", table_name="outbox_events")
    op.create_index(
        "ix_outbox_events_pending",
        "outbox_events",
        ["seq"],
        postgresql_where=sa.text("sent_at IS NULL"),
    )
    op.drop_column("outbox_events", "parked_at")
    op.drop_column("outbox_events", "last_error")
    op.drop_column("outbox_events", "refusals")
