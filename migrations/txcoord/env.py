"""Alembic environment of the `chomik_txcoord` database."""

from txcoord import metadata
from chomik.migrating import run_env

run_env(metadata)
