"""The kit's messaging tables: the callback edges write to `outbox_events`.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

A signed bank or carrier callback is written to the outbox in the transaction that
remembers its signature; the gateway worker's relay puts it on its topic. Before,
the edge published to Kafka itself and answered 202 on the broker's ack, so a broker
that lost what it held lost the callbacks it had acknowledged.
"""

from chomik.messaging.migrations import (
    downgrade_messaging,
    downgrade_messaging_v2,
    upgrade_messaging,
    upgrade_messaging_v2,
)

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    upgrade_messaging()
    upgrade_messaging_v2()


def downgrade() -> None:
    downgrade_messaging_v2()
    downgrade_messaging()
