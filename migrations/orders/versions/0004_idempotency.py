"""The kit's idempotency keys: `idempotency_keys`.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from chomik.idempotency_migrations import downgrade_idempotency, upgrade_idempotency

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    upgrade_idempotency()


def downgrade() -> None:
    downgrade_idempotency()
