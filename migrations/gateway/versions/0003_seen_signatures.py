"""The kit's replay guard of signed callbacks: `seen_signatures`.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from chomik.signing import downgrade_seen_signatures, upgrade_seen_signatures

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    upgrade_seen_signatures()


def downgrade() -> None:
    downgrade_seen_signatures()
