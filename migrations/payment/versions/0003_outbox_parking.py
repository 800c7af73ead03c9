"""Outbox parking: rows the broker refuses for good stop holding their key.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from chomik.messaging.migrations import downgrade_messaging_v2, upgrade_messaging_v2

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    upgrade_messaging_v2()


def downgrade() -> None:
    downgrade_messaging_v2()
