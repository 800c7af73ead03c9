"""Alembic environment of the `chomik_carrier` database."""

from chomik.migrating import run_env
from mocks.carrier.models import Base

run_env(Base.metadata)
