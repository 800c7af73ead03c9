"""Every revocation NOTIFYs `chomik_revocations`: the gateways' deny lists in memory.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30

A logged-out access token (a row of `revoked_tokens`) notifies `jti:<jti>`; a
revoked session (`refresh_families.revoked_at` set) notifies `family:<id>`. The
notification is sent when the revoking transaction commits, whatever revoked.
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION notify_revocation() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_TABLE_NAME = 'revoked_tokens' THEN
                PERFORM pg_notify('chomik_revocations', 'jti:' || NEW.jti);
            ELSE
                PERFORM pg_notify('chomik_revocations', 'family:' || NEW.id::text);
            END IF;
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER revoked_tokens_notify AFTER INSERT ON revoked_tokens"
        " FOR EACH ROW EXECUTE FUNCTION notify_revocation()"
    )
    op.execute(
        "CREATE TRIGGER refresh_families_notify"
        " AFTER INSERT OR UPDATE OF revoked_at ON refresh_families"
        " FOR EACH ROW WHEN (NEW.revoked_at IS NOT NULL)"
        " EXECUTE FUNCTION notify_revocation()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER refresh_families_notify ON refresh_families")
    op.execute("DROP TRIGGER revoked_tokens_notify ON revoked_tokens")
    op.execute("DROP FUNCTION notify_revocation()")
