"""Alembic environment of the `chomik_payment` database."""

from apps.payment.models import Base
from chomik.migrating import run_env

run_env(Base.metadata)
