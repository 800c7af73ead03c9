"""Watch the bank transactions of payments that expired in the last week.

The poller now checks an expired payment's transaction for PAYMENT_LATE_WATCH
(a week by default) and refunds a success it finds; payments that expired before
are made due once, within the next hour, so a late success whose callback was lost
is found too.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        # Spread over an hour, so that a backlog comes due a little at a time.
        "UPDATE payments SET next_check_at = now() + random() * interval '1 hour'"
        " WHERE status = 'EXPIRED' AND refunded_at IS NULL"
        " AND next_check_at IS NULL AND created_at > now() - interval '7 days'"
    )


def downgrade() -> None:
    op.execute("UPDATE payments SET next_check_at = NULL WHERE status = 'EXPIRED'")
