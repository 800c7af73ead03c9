"""Alembic environment of the `chomik_txcoord` database."""

from chomik.migrating import run_env
from txcoord import metadata

run_env(metadata)
