"""Alembic operations of the kit's `idempotency_keys` table.

Written once here and called from each app's migration, so every database gets the
same schema. A later change to the table gets a new pair of functions (version 2);
these stay as they are, like any applied migration.
"""

import sqlalchemy as sa
from alembic import op

from chomik.db import UTCDateTime


def upgrade_idempotency() -> None:
    """Create the idempotency keys table (version 1): call from an app's migration."""
    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.String(length=300), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("response_status", sa.SmallInteger(), nullable=True),
        sa.Column("response_body", sa.JSON(none_as_null=True), nullable=True),
        sa.Column(
            "created_at", UTCDateTime(), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index(
        "ix_idempotency_keys_expires_at", "idempotency_keys", ["expires_at"]
    )


def downgrade_idempotency() -> None:
    """Drop the idempotency keys table (version 1)."""
    op.drop_index("ix_idempotency_keys_expires_at", table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
