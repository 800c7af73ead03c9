"""Alembic environment of the `chomik_carrier` database."""

from mocks.carrier.models import Base
from chomik.migrating import run_env

run_env(Base.metadata)
