"""Alembic environment of the `chomik_gateway` database."""

from apps.gateway.models import Base
from chomik.migrating import run_env

run_env(Base.metadata)
