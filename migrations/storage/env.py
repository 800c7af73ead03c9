"""Alembic environment of the `chomik_storage` database."""

from apps.storage.models import Base
from chomik.migrating import run_env

run_env(Base.metadata)
