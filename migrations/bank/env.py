"""Alembic environment of the `chomik_bank` database."""

from chomik.migrating import run_env
from mocks.bank.models import Base

run_env(Base.metadata)
