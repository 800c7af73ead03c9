"""HMAC signatures of callbacks from outside systems, and a guard against replays.

The header is `X-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...]`, where each
`v1` is the HMAC-SHA256 of `f"{t}.".encode() + body` under one secret (the scheme
Stripe documents). A receiver accepts several secrets at once, so a secret is
rotated without downtime: add the new one, let senders switch, drop the old one.
A sender signs with the first secret of its list.

A valid signature can still be sent twice. `remember_signature` records the
signed message (`VerifiedSignature.replay_key`) in the receiver's own transaction
and refuses it the second time. A row only needs to outlive the tolerance window,
past which `verify` refuses the message anyway, so `prune_seen_signatures` deletes
expired rows; a consumer that verifies a queued message as of when it was received
keeps them longer (its `grace`), for as long as it may lag behind its topic.

SignatureError
├── MalformedSignatureError     no header, unparseable, no t or no v1
├── SignatureMismatchError      no v1 entry matches any accepted secret
├── SignatureExpiredError       t is older than the tolerance
└── SignatureFromFutureError    t is further ahead than the tolerance
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from chomik.db import UTCDateTime, compiled_once

HEADER = "X-Signature"
SCHEME = "v1"
SEEN_SIGNATURES_TABLE = "seen_signatures"
# Bounds on what a caller may make us parse and hash.
MAX_HEADER_LENGTH = 2048
MAX_SIGNATURES = 8
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


class SignatureError(ValueError):
    """A signature that does not prove the message came from a holder of a secret."""


class MalformedSignatureError(SignatureError):
    """The header is missing or is not `t=<unix seconds>,v1=<hex>`."""


class SignatureMismatchError(SignatureError):
    """No signature of the header matches the body under any accepted secret."""


class SignatureExpiredError(SignatureError):
    """The timestamp is older than the tolerance allows."""


class SignatureFromFutureError(SignatureError):
    """The timestamp is further in the future than the tolerance allows."""


@dataclass(frozen=True)
class VerifiedSignature:
    """What `verify` accepted: the timestamp, the matching signature and its secret."""

    timestamp: int
    signature: str
    secret_index: int
    expires_at: dt.datetime
    replay_key: str


def split_secrets(raw: str) -> tuple[str, ...]:
    """The secrets of a comma-separated setting, first (the signing one) first."""
    return tuple(s.strip() for s in raw.split(",") if s.strip())


def _digest(secret: str, timestamp: int, body: bytes) -> str:
    payload = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def sign(body: bytes, secret: str, *, now: float | None = None) -> str:
    """The `X-Signature` header value of `body` signed with `secret` at `now`."""
    timestamp = int(time.time() if now is None else now)
    return f"t={timestamp},{SCHEME}={_digest(secret, timestamp, body)}"


def _entries(header: str | None) -> tuple[list[str], list[str]]:
    """The `t` and the `v1` values of a header, in order; unknown schemes ignored."""
    if not header:
        raise MalformedSignatureError(f"no {HEADER} header")
    if len(header) > MAX_HEADER_LENGTH:
        raise MalformedSignatureError(f"{HEADER} header too long")
    timestamps: list[str] = []
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep or not key:
            raise MalformedSignatureError(
                f"{HEADER}: {item.strip()!r} is not key=value"
            )
        if key == "t":
            timestamps.append(value)
        elif key == SCHEME:
            signatures.append(value)
    return timestamps, signatures


def _parse(header: str | None) -> tuple[int, list[str]]:
    """The timestamp and the `v1` signatures of a header."""
    timestamps, signatures = _entries(header)
    if len(timestamps) != 1 or not _TIMESTAMP.fullmatch(timestamps[0]):
        raise MalformedSignatureError(f"{HEADER}: needs exactly one numeric t")
    if not signatures:
        raise MalformedSignatureError(f"{HEADER}: no {SCHEME} signature")
    if len(signatures) > MAX_SIGNATURES:
        raise MalformedSignatureError(f"{HEADER}: too many signatures")
    # compare_digest refuses non-ASCII text, and a bad entry cannot match anyway.
    if not all(_HEX_DIGEST.fullmatch(s) for s in signatures):
        raise MalformedSignatureError(f"{HEADER}: {SCHEME} must be 64 hex digits")
    return int(timestamps[0]), signatures


def verify(
    header: str | None,
    body: bytes,
    secrets: Iterable[str],
    *,
    tolerance: int,
    now: float | None = None,
) -> VerifiedSignature:
    """Check `header` against `body` under any of `secrets`; raise `SignatureError`."""
    timestamp, signatures = _parse(header)
    current = time.time() if now is None else now
    if current - timestamp > tolerance:
        raise SignatureExpiredError(f"signed {int(current - timestamp)} s ago")
    if timestamp - current > tolerance:
        raise SignatureFromFutureError(f"signed {int(timestamp - current)} s ahead")
    for index, secret in enumerate(secrets):
        expected = _digest(secret, timestamp, body)
        # Every entry is compared, in constant time each: no early exit on a match
        # reveals which entry or how much of it was right.
        matches = [hmac.compare_digest(expected, given) for given in signatures]
        if any(matches):
            return VerifiedSignature(
                timestamp=timestamp,
                signature=expected,
                secret_index=index,
                expires_at=dt.datetime.fromtimestamp(timestamp + tolerance, dt.UTC),
                # Independent of the secret: re-sending the message with only one
                # of its v1 entries must still count as the same message.
                replay_key=hashlib.sha256(f"{timestamp}.".encode() + body).hexdigest(),
            )
    raise SignatureMismatchError("no signature matches an accepted secret")


# --- replay guard ---------------------------------------------------------------------


def install_signatures(metadata: sa.MetaData) -> sa.Table:
    """Add the `seen_signatures` table to `metadata` once; return it."""
    if SEEN_SIGNATURES_TABLE in metadata.tables:
        return metadata.tables[SEEN_SIGNATURES_TABLE]
    return sa.Table(
        SEEN_SIGNATURES_TABLE,
        metadata,
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.Index("ix_seen_signatures_expires_at", "expires_at"),
    )


# The statements below need only the table's name and columns, whichever metadata
# an app installed it into.
_GUARD = sa.table(
    SEEN_SIGNATURES_TABLE,
    sa.column("digest", sa.String(64)),
    sa.column("expires_at", UTCDateTime()),
)


def _digest_of(signature: str) -> str:
    # Fixed width whatever the caller passes (a replay key, a header, a v1 value).
    return hashlib.sha256(signature.encode()).hexdigest()


def remember_signature(
    session: Session, signature: str, *, expires_at: dt.datetime
) -> bool:
    """Record a signed message in the caller's transaction; False if seen before."""
    result = session.execute(
        _REMEMBER, {"digest": _digest_of(signature), "expires_at": expires_at}
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


_REMEMBER = compiled_once(
    insert(_GUARD)
    .values(
        digest=sa.bindparam("digest"),
        expires_at=sa.bindparam("expires_at", type_=UTCDateTime()),
    )
    .on_conflict_do_nothing(index_elements=["digest"])
)


def prune_seen_signatures(
    session: Session,
    *,
    now: dt.datetime | None = None,
    grace: dt.timedelta = dt.timedelta(0),
) -> int:
    """Delete remembered signatures expired for longer than `grace`; return how many.

    A receiver that verifies with the time the message was received (a consumer
    behind on its topic) still accepts it past its expiry; such a receiver keeps
    rows for as long as it may lag, as `grace`.
    """
    cutoff = (now or dt.datetime.now(dt.UTC)) - grace
    result = session.execute(sa.delete(_GUARD).where(_GUARD.c.expires_at <= cutoff))
    return int(result.rowcount)  # type: ignore[attr-defined]


def upgrade_seen_signatures() -> None:
    """Create the `seen_signatures` table (version 1): call from an app's migration."""
    op.create_table(
        SEEN_SIGNATURES_TABLE,
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_seen_signatures")),
    )
    op.create_index(
        "ix_seen_signatures_expires_at", SEEN_SIGNATURES_TABLE, ["expires_at"]
    )


def downgrade_seen_signatures() -> None:
    """Drop the `seen_signatures` table (version 1)."""
    op.drop_index("ix_seen_signatures_expires_at", table_name=SEEN_SIGNATURES_TABLE)
    op.drop_table(SEEN_SIGNATURES_TABLE)
