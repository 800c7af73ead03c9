"""Access tokens: issue (gateway) and verify (every service), roles and service tokens.

User access tokens are RS256 JWTs signed by the gateway; services verify them with
the public key only (a PEM file, or the gateway's JWKS fetched and cached by kid).
Service tokens, for internal endpoints, are short HS256 JWTs under a shared secret;
each kind is checked with its own algorithm list, so one can never pass as the other.

A view declares who may call it with `require_role`, `require_service` or
`optional_token`. The declaration is recorded on the view (`Access`), and the web
factory checks it before flask-smorest parses the request's body or query: a request
without a valid token is a 401 even when its input is invalid too.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import current_app, g, request

from chomik.problems import ForbiddenError, UnauthorizedError, UnavailableError

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

ROLES = ("buyer", "seller", "admin")
SERVICE_ROLE = "service"
SERVICE_AUDIENCE = "chomik-internal"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user from an access token, or a service."""

    id: str
    roles: frozenset[str]
    jti: str = ""
    expires_at: int = 0
    session_id: str = ""

    def has_role(self, *roles: str) -> bool:
        """Tell whether the caller holds any of the roles."""
        return bool(self.roles.intersection(roles))

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


def generate_key_pair() -> tuple[bytes, bytes]:
    """A new RSA key pair as (private PEM, public PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


def key_id(public_pem: bytes) -> str:
    """A stable key id: the RFC 7638 thumbprint of the public key."""
    return _thumbprint(_rsa_jwk(public_pem))


def _rsa_jwk(public_pem: bytes) -> dict[str, Any]:
    key = serialization.load_pem_public_key(public_pem)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("access tokens are signed with RSA keys only")
    return jwt.algorithms.RSAAlgorithm.to_jwk(key, as_dict=True)


def _thumbprint(jwk: Mapping[str, Any]) -> str:
    import base64
    import hashlib
    import json

    canonical = json.dumps(
        {k: jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"), sort_keys=True
    )
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def public_jwk(public_pem: bytes) -> dict[str, Any]:
    """The JWK form of a public key, with kid, use and alg."""
    jwk = _rsa_jwk(public_pem)
    jwk.update(kid=_thumbprint(jwk), use="sig", alg="RS256")
    return jwk


def issue_access_token(
    private_pem: bytes,
    *,
    subject: str,
    roles: Iterable[str],
    issuer: str,
    audience: str,
    ttl: int,
    kid: str,
    extra: Mapping[str, Any] | None = None,
    issued_at: int | None = None,
    jti: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """Sign an RS256 access token; return it and its claims.

    RS256 signatures are deterministic: the same `issued_at` and `jti` give the
    same token again.
    """
    now = int(time.time()) if issued_at is None else issued_at
    claims: dict[str, Any] = {
        "sub": subject,
        "roles": sorted(roles),
        "jti": jti or uuid.uuid4().hex,
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
        "iss": issuer,
        "aud": audience,
        "type": "access",
        **(extra or {}),
    }
    token = jwt.encode(claims, private_pem, algorithm="RS256", headers={"kid": kid})
    return token, claims


def issue_service_token(secret: str, service: str, ttl: int = 300) -> str:
    """Sign a short HS256 token naming the calling service."""
    now = int(time.time())
    claims = {
        "sub": f"service:{service}",
        "roles": [SERVICE_ROLE],
        "iat": now,
        "exp": now + ttl,
        "aud": SERVICE_AUDIENCE,
        "type": "service",
    }
    return jwt.encode(claims, secret, algorithm="HS256")


class TokenVerifier:
    """Verify access tokens against a public key file or a cached JWKS."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        public_key_file: str = "",
        public_keys: Mapping[str, bytes] | None = None,
        jwks_url: str = "",
        service_secret: str,
        is_revoked: Callable[[Mapping[str, Any]], bool] | None = None,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.service_secret = service_secret
        self.is_revoked = is_revoked
        self._public_key: bytes | None = None
        self._public_keys = dict(public_keys or {})
        self._jwks: jwt.PyJWKClient | None = None
        if self._public_keys:
            pass  # chosen by kid in _key_for
        elif public_key_file:
            self._public_key = Path(public_key_file).read_bytes()
        elif jwks_url:
            self._jwks = jwt.PyJWKClient(
                jwks_url, cache_keys=True, lifespan=300, timeout=5
            )

    def _key_for(self, token: str) -> Any:
        if self._public_keys:
            try:
                kid = jwt.get_unverified_header(token).get("kid")
            except jwt.InvalidTokenError as exc:
                raise UnauthorizedError("The access token is invalid") from exc
            if kid not in self._public_keys:
                raise UnauthorizedError("The token's signing key is unknown")
            return self._public_keys[kid]
        if self._public_key is not None:
            return self._public_key
        if self._jwks is None:
            raise UnauthorizedError("No key is configured to verify tokens")
        try:
            return self._jwks.get_signing_key_from_jwt(token).key
        except (jwt.PyJWKClientConnectionError, jwt.PyJWKSetError, ValueError) as exc:
            # Our side cannot check the token just now: not the caller's fault.
            log.warning("the JWKS cannot be fetched: %s", exc)
            raise UnavailableError(
                "The keys that verify tokens cannot be fetched; try again shortly",
                headers={"Retry-After": "5"},
            ) from exc
        except jwt.PyJWKClientError as exc:
            raise UnauthorizedError("The token's signing key is unknown") from exc

    def verify_access(self, token: str) -> Principal:
        """Check signature, expiry, issuer, audience, type and revocation."""
        try:
            claims = jwt.decode(
                token,
                self._key_for(token),
                algorithms=["RS256"],
                issuer=self.issuer,
                audience=self.audience,
                options={"require": ["exp", "iat", "sub", "jti"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise UnauthorizedError("The access token has expired") from exc
        except jwt.InvalidTokenError as exc:
            raise UnauthorizedError("The access token is invalid") from exc
        if claims.get("type") != "access":
            raise UnauthorizedError("This is not an access token")
        if self.is_revoked is not None and self.is_revoked(claims):
            raise UnauthorizedError("The access token has been revoked")
        return Principal(
            id=str(claims["sub"]),
            roles=frozenset(claims.get("roles") or ()),
            jti=str(claims["jti"]),
            expires_at=int(claims["exp"]),
            session_id=str(claims.get("sid") or ""),
        )

    def verify_service(self, token: str) -> Principal:
        """Check a service token (HS256 under the shared secret)."""
        try:
            claims = jwt.decode(
                token,
                self.service_secret,
                algorithms=["HS256"],
                audience=SERVICE_AUDIENCE,
                options={"require": ["exp", "sub"]},
            )
        except jwt.InvalidTokenError as exc:
            raise UnauthorizedError("The service token is invalid") from exc
        if claims.get("type") != "service":
            raise UnauthorizedError("This is not a service token")
        return Principal(id=str(claims["sub"]), roles=frozenset({SERVICE_ROLE}))


def bearer_token() -> str | None:
    """The bearer token of the current request, if any."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def verifier() -> TokenVerifier:
    """The token verifier of the current app."""
    return current_app.extensions["chomik.auth"]  # type: ignore[no-any-return]


def optional_user() -> Principal | None:
    """The authenticated user, or None for an anonymous request."""
    if "chomik_user" not in g:
        token = bearer_token()
        g.chomik_user = None if token is None else verifier().verify_access(token)
    user: Principal | None = g.chomik_user
    return user


def current_user() -> Principal:
    """The authenticated user; 401 when there is none."""
    user = optional_user()
    if user is None:
        raise UnauthorizedError("A bearer access token is required")
    return user


def user_uuid(user: Principal) -> uuid.UUID:
    """The caller's user id as a UUID; 403 when the token's subject is not one."""
    try:
        return uuid.UUID(user.id)
    except ValueError as exc:
        raise ForbiddenError("The token's subject is not a user id") from exc


@dataclass(frozen=True)
class Access:
    """Who may call a view: recorded on it and checked before its input is parsed.

    `kind` is "user" (a valid access token holding one of `roles`, any role when
    empty), "service" (a service token) or "optional" (anonymous, but a presented
    token must be valid).
    """

    kind: str
    roles: tuple[str, ...] = ()

    def check(self) -> None:
        """Raise 401 or 403 unless the current request satisfies this access."""
        if self.kind == "optional":
            optional_user()
        elif self.kind == "service":
            token = bearer_token()
            if token is None:
                raise UnauthorizedError("A service token is required")
            if "chomik_service" not in g:
                g.chomik_service = verifier().verify_service(token)
        else:
            user = current_user()
            if self.roles and not user.has_role(*self.roles):
                raise ForbiddenError("Your role may not do this")


ACCESS_ATTRIBUTE = "chomik_access"


def access_of(view: Callable[..., Any]) -> Access | None:
    """The access recorded on a view (kept through `functools.wraps` decorators)."""
    access = getattr(view, ACCESS_ATTRIBUTE, None)
    return access if isinstance(access, Access) else None


def _guarded(access: Access, view: Callable[P, R]) -> Callable[P, R]:
    # The kit's request hook checks the access before flask-smorest parses the
    # body or query (so a request without a token is a 401, never a 422); the
    # wrapper checks again for views called some other way.
    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        access.check()
        return view(*args, **kwargs)

    setattr(wrapper, ACCESS_ATTRIBUTE, access)
    return wrapper


def require_role(*roles: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Let through only users holding one of the roles (any user when none given)."""

    def decorator(view: Callable[P, R]) -> Callable[P, R]:
        return _guarded(Access("user", roles), view)

    return decorator


def require_service(view: Callable[P, R]) -> Callable[P, R]:
    """Let through only other services of the deployment (internal endpoints)."""
    return _guarded(Access("service"), view)


def optional_token(view: Callable[P, R]) -> Callable[P, R]:
    """Let anyone through, but refuse a bad token (401) rather than ignore it."""
    return _guarded(Access("optional"), view)
