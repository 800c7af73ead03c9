"""Alembic environment of the `chomik_orders` database."""

from apps.orders.models import Base
from chomik.migrating import run_env

run_env(Base.metadata)
