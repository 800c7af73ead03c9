"""The kit's messaging tables: `outbox_events` and `inbox_events`.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from chomik.messaging.migrations import downgrade_messaging, upgrade_messaging

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    upgrade_messaging()


def downgrade() -> None:
    downgrade_messaging()
