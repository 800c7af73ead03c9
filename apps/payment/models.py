"""Database models of the payment service (database `chomik_payment`)."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase

from chomik.db import TYPE_ANNOTATION_MAP, new_metadata
from chomik.messaging.outbox import install_messaging
from chomik.signing import install_signatures


class Base(DeclarativeBase):
    metadata = new_metadata()
    type_annotation_map = TYPE_ANNOTATION_MAP


install_messaging(Base.metadata)
install_signatures(Base.metadata)
