"""The bank: accounts, transactions, the callback queue and fault switches.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

from chomik.db import UTCDateTime
from chomik.webhooks_migrations import downgrade_callbacks, upgrade_callbacks

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("balance", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column(
            "created_at", UTCDateTime(), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column(
            "updated_at", UTCDateTime(), server_default=sa.text("now()"), nullable=False
        ),
        sa.CheckConstraint(
            "balance >= 0", name=op.f("ck_accounts_balance_not_negative")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
    )
    op.create_table(
        "transactions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("merchant_account_id", sa.Uuid(), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=False),
        sa.Column("amount", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("callback_url", sa.String(length=2000), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("payer_account_id", sa.Uuid(), nullable=True),
        sa.Column(
            "created_at", UTCDateTime(), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column(
            "updated_at", UTCDateTime(), server_default=sa.text("now()"), nullable=False
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_transactions_amount_positive")),
        sa.ForeignKeyConstraint(
            ["merchant_account_id"],
            ["accounts.id"],
            name=op.f("fk_transactions_merchant_account_id_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["payer_account_id"],
            ["accounts.id"],
            name=op.f("fk_transactions_payer_account_id_accounts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transactions")),
        sa.UniqueConstraint(
            "merchant_account_id",
            "reference",
            name="uq_transactions_merchant_reference",
        ),
    )
    upgrade_callbacks()


def downgrade() -> None:
    downgrade_callbacks()
    op.drop_table("transactions")
    op.drop_table("accounts")
