"""Database models of the gateway (database `chomik_gateway`).

Accounts, refresh-token families (rotation and reuse detection), the deny-list of
revoked access tokens, and the rate-limit counters every worker shares.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from chomik.db import (
    TYPE_ANNOTATION_MAP,
    TimestampMixin,
    UTCDateTime,
    new_metadata,
    utcnow,
)
from chomik.signing import install_signatures


class Base(DeclarativeBase):
    metadata = new_metadata()
    type_annotation_map = TYPE_ANNOTATION_MAP


# Signed callbacks already queued: a replay is answered 202 and not published again.
install_signatures(Base.metadata)


class Role(enum.StrEnum):
    BUYER = "buyer"
    SELLER = "seller"
    ADMIN = "admin"


class User(TimestampMixin, Base):
    __tablename__ = "users"
    __table_args__ = (
        sa.CheckConstraint("role IN ('buyer', 'seller', 'admin')", name="role"),
        sa.CheckConstraint("email = lower(email)", name="email_lowercase"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    role: Mapped[str] = mapped_column(sa.String(16))
    password_hash: Mapped[str] = mapped_column(sa.String(255))


class RefreshFamily(Base):
    """One login: every refresh token rotated from it shares the family."""

    __tablename__ = "refresh_families"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(
        UTCDateTime, server_default=sa.func.now(), default=utcnow
    )
    revoked_at: Mapped[dt.datetime | None]


class RefreshToken(Base):
    """A refresh token, stored as its SHA-256 (the token itself is 256 random bits)."""

    __tablename__ = "refresh_tokens"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    family_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("refresh_families.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(
        UTCDateTime, server_default=sa.func.now(), default=utcnow
    )


class RevokedToken(Base):
    """A logged-out access token, refused until it would have expired anyway."""

    __tablename__ = "revoked_tokens"

    jti: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)


class RateLimitCounter(Base):
    """A fixed-window counter of the rate limiter, shared by every worker."""

    __tablename__ = "rate_limits"

    key: Mapped[str] = mapped_column(sa.String(512), primary_key=True)
    count: Mapped[int] = mapped_column(sa.Integer)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)
