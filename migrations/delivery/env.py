"""Alembic environment of the `chomik_delivery` database."""

from apps.delivery.models import Base
from chomik.migrating import run_env

run_env(Base.metadata)
