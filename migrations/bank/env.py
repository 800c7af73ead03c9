"""Alembic environment of the `chomik_bank` database."""

from mocks.bank.models import Base
from chomik.migrating import run_env

run_env(Base.metadata)
