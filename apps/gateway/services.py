"""Accounts and tokens: register, log in, rotate refresh tokens, log out.

Tokens are signed by the kit (flask-jwt-extended, in the gateway's app context);
this module decides which tokens a caller gets and keeps the refresh tokens'
state: each one is stored (hashed) in its login session's family, spent once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import unicodedata
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from apps.gateway.errors import (
    EmailTakenError,
    InvalidCredentialsError,
    InvalidRefreshTokenError,
)
from apps.gateway.keys import SigningKeys
from apps.gateway.metrics import LOGINS
from apps.gateway.models import RefreshFamily, RefreshToken, RevokedToken, Role, User
from apps.gateway.passwords import MIN_PASSWORD_LENGTH, Passwords
from chomik.auth import Principal, issue_access_token, issue_refresh_token
from chomik.db import transaction, utcnow
from chomik.problems import UnauthorizedError, ValidationProblem


@dataclass(frozen=True)
class TokenIssuer:
    """Token lifetimes, how long a spent token may be retried, and the signing key
    (whose private part also derives a spent refresh token's successor)."""

    keys: SigningKeys
    access_ttl: int
    refresh_ttl: int
    reuse_grace: int = 0


@dataclass(frozen=True)
class Account:
    id: str
    email: str
    name: str
    roles: list[str]


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "Bearer"


def normalize_email(email: str) -> str:
    """The one spelling of an e-mail address that is stored and looked up.

    NFKC first: a full-width or ligature spelling is the same address.
    """
    return unicodedata.normalize("NFKC", email).strip().lower()


def _hash_token(raw: str) -> str:
    # A refresh token is signed and carries a random jti, so a fast hash is
    # enough: nobody can guess one, and the database alone reveals no token.
    return hashlib.sha256(raw.encode()).hexdigest()


def _account(user: User) -> Account:
    return Account(str(user.id), user.email, user.name, [user.role])


def register_account(
    session: Session,
    *,
    email: str,
    password: str,
    name: str,
    role: Role,
    passwords: Passwords,
) -> Account:
    """Create an account; the e-mail is unique whatever its letter case."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationProblem(
            {"password": [f"Shorter than minimum length {MIN_PASSWORD_LENGTH}."]}
        )
    email = normalize_email(email)
    if session.scalar(sa.select(User.id).where(User.email == email)) is not None:
        raise EmailTakenError(f"{email} is already registered")
    user = User(
        email=email, name=name, role=role.value, password_hash=passwords.hash(password)
    )
    session.add(user)
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent registration won the race
        raise EmailTakenError(f"{email} is already registered") from exc
    return _account(user)


def get_account(session: Session, user_id: str) -> Account:
    """The account behind an access token's subject."""
    user = session.get(User, as_uuid(user_id)) if as_uuid(user_id) else None
    if user is None:
        raise UnauthorizedError("The account of this token no longer exists")
    return _account(user)


def log_in(
    session: Session,
    *,
    email: str,
    password: str,
    passwords: Passwords,
    issuer: TokenIssuer,
) -> TokenPair:
    """Check the password and start a new refresh-token family.

    An unknown e-mail and a wrong password give the same error after the same
    work (one argon2 verification). A hash made with older parameters is
    replaced while the plain password is at hand.
    """
    user = session.scalar(sa.select(User).where(User.email == normalize_email(email)))
    if user is None:
        passwords.verify_nothing(password)
    if user is None or not passwords.verify(user.password_hash, password):
        LOGINS.labels("failure").inc()
        raise InvalidCredentialsError("Wrong e-mail or password")
    LOGINS.labels("success").inc()
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash(password)
    family = RefreshFamily(user_id=user.id)
    session.add(family)
    session.flush()
    return _issue(session, user, family.id, issuer)


def _issue(
    session: Session, user: User, family_id: uuid.UUID, issuer: TokenIssuer
) -> TokenPair:
    claims = {"sid": str(family_id)}
    refresh = issue_refresh_token(str(user.id), ttl=issuer.refresh_ttl, claims=claims)
    _store_refresh_token(session, family_id, refresh, issuer)
    access = issue_access_token(
        str(user.id), roles=[user.role], ttl=issuer.access_ttl, claims=claims
    )
    return TokenPair(access, refresh, issuer.access_ttl)


def _store_refresh_token(
    session: Session, family_id: uuid.UUID, raw: str, issuer: TokenIssuer
) -> None:
    session.add(
        RefreshToken(
            family_id=family_id,
            token_hash=_hash_token(raw),
            expires_at=utcnow() + dt.timedelta(seconds=issuer.refresh_ttl),
        )
    )


def _successor(
    user: User, family_id: uuid.UUID, issuer: TokenIssuer, spent: str, at: dt.datetime
) -> TokenPair:
    """The pair that replaces a spent refresh token, the same each time it is asked.

    Its jtis are derived from the spent token with a key only the gateway holds
    (from its signing key), and it is signed with the spending time: a retry
    within the grace window gets the very same pair back, with nothing more stored.
    """
    key = hashlib.sha256(b"chomik refresh successor\0" + issuer.keys.private_pem)
    digest = hmac.new(key.digest(), spent.encode(), hashlib.sha256).digest()
    claims = {"sid": str(family_id)}
    issued_at = int(at.timestamp())
    refresh = issue_refresh_token(
        str(user.id), ttl=issuer.refresh_ttl, claims=claims, issued_at=issued_at,
        jti=hashlib.sha256(b"refresh\0" + digest).hexdigest()[:32],
    )  # fmt: skip
    access = issue_access_token(
        str(user.id), roles=[user.role], ttl=issuer.access_ttl, claims=claims,
        issued_at=issued_at, jti=hashlib.sha256(b"jti\0" + digest).hexdigest()[:32],
    )  # fmt: skip
    return TokenPair(access, refresh, issuer.access_ttl)


def rotate_refresh_token(
    sessions: sessionmaker[Session], raw: str, issuer: TokenIssuer
) -> TokenPair:
    """Spend a refresh token and issue the next pair of its family.

    Runs in its own transaction, which commits even when the answer is 401: a
    spent token presented again after the grace window revokes its whole
    family, and that revocation must stay although the request fails. Within
    the window (a retry whose answer was lost) it answers the same pair again.
    The token row is locked, so concurrent uses of one token are serialised.
    """
    with transaction(sessions) as session:
        pair, refusal = _rotate(session, raw, issuer)
    if pair is None:
        raise InvalidRefreshTokenError(refusal)
    return pair


def _rotate(
    session: Session, raw: str, issuer: TokenIssuer
) -> tuple[TokenPair | None, str]:
    row = session.execute(
        sa.select(RefreshToken, RefreshFamily, User)
        .join(RefreshFamily, RefreshToken.family_id == RefreshFamily.id)
        .join(User, RefreshFamily.user_id == User.id)
        .where(RefreshToken.token_hash == _hash_token(raw))
        .with_for_update(of=RefreshToken)
    ).first()
    if row is None:
        return None, "Unknown refresh token"
    token, family, user = row
    now = utcnow()
    if family.revoked_at is not None:
        return None, "This refresh token's session has been revoked"
    if token.used_at is not None:
        if now - token.used_at <= dt.timedelta(seconds=issuer.reuse_grace):
            # A retry whose answer was lost: the same successor again.
            return _successor(user, family.id, issuer, raw, token.used_at), ""
        family.revoked_at = now
        return None, "Refresh token reused: its session is revoked"
    if token.expires_at <= now:
        return None, "The refresh token has expired"
    token.used_at = now
    pair = _successor(user, family.id, issuer, raw, now)
    _store_refresh_token(session, family.id, pair.refresh_token, issuer)
    return pair, ""


def log_out(
    session: Session,
    principal: Principal,
    *,
    refresh_token: str | None = None,
) -> None:
    """Deny the access token until it expires and revoke its refresh family.

    `principal` comes from verifying the access token; its session id is the
    refresh family the token was issued in.
    """
    family_id = principal.session_id or None
    expires_at = dt.datetime.fromtimestamp(principal.expires_at, dt.UTC)
    session.execute(
        insert(RevokedToken)
        .values(jti=principal.jti, expires_at=expires_at)
        .on_conflict_do_nothing(index_elements=["jti"])
    )
    families = [f for f in [as_uuid(family_id)] if f is not None]
    if refresh_token:
        families.extend(
            session.scalars(
                sa.select(RefreshToken.family_id).where(
                    RefreshToken.token_hash == _hash_token(refresh_token)
                )
            )
        )
    _revoke_families(session, principal.id, families)


def _revoke_families(
    session: Session, user_id: str, families: Iterable[uuid.UUID]
) -> None:
    ids = list(families)
    owner = as_uuid(user_id)
    if not ids or owner is None:
        return
    session.execute(
        sa.update(RefreshFamily)
        .where(
            RefreshFamily.id.in_(ids),
            RefreshFamily.user_id == owner,
            RefreshFamily.revoked_at.is_(None),
        )
        .values(revoked_at=utcnow())
    )


def as_uuid(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None


def prune_refresh_tokens(session: Session, *, older_than: dt.timedelta) -> int:
    """Delete refresh tokens and families that can never serve again; count rows.

    A token expired `older_than` ago goes, spent or not. A family revoked
    `older_than` ago goes whole (its tokens cascade): each of them is refused
    anyway, and `older_than` must outlast an access token, whose family the deny
    check reads. A spent token of a live family stays until it expires: presenting
    it again is how a stolen token is found out (the family is revoked), and
    within the refresh grace window it answers the retry. Families left with no
    token go last. Deny-list entries go once their access token has expired: they
    can never match a valid token again.
    """
    cutoff = utcnow() - older_than
    revoked = session.execute(
        sa.delete(RefreshFamily).where(RefreshFamily.revoked_at < cutoff)
    )
    expired = session.execute(
        sa.delete(RefreshToken).where(RefreshToken.expires_at < cutoff)
    )
    empty = session.execute(
        sa.delete(RefreshFamily).where(
            RefreshFamily.created_at < cutoff,
            ~sa.select(RefreshToken.id)
            .where(RefreshToken.family_id == RefreshFamily.id)
            .exists(),
        )
    )
    denied = session.execute(
        sa.delete(RevokedToken).where(RevokedToken.expires_at < utcnow())
    )
    results = (revoked, expired, empty, denied)
    return sum(result.rowcount for result in results)  # type: ignore[attr-defined]
