"""Database models of the orders service (database `chomik_orders`)."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase

from chomik.db import TYPE_ANNOTATION_MAP, new_metadata
from chomik.idempotency import install_idempotency
from chomik.messaging.outbox import install_messaging


class Base(DeclarativeBase):
    metadata = new_metadata()
    type_annotation_map = TYPE_ANNOTATION_MAP


install_messaging(Base.metadata)
install_idempotency(Base.metadata)
