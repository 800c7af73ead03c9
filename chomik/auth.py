"""Access tokens: issue (gateway) and verify (every service), roles and service tokens.

User tokens are flask-jwt-extended's: RS256 access and refresh tokens signed by
the gateway, verified by every service with the public key only. The decode key
loader picks the verifying key by the token's `kid` (the gateway's own keys, a
PEM file, or the gateway's JWKS fetched and cached); the blocklist loader asks
the app whether a token was revoked; the error loaders answer 401 problems (a
JWKS that cannot be fetched is our fault: 503).

Service tokens, for internal endpoints, are short HS256 JWTs under a shared
secret, made by clients outside any web app: they keep their own algorithm, key
and audience, and are checked apart from user tokens, so one can never pass as
the other (the user tokens' decoding allows RS256 only).

A view declares who may call it with `require_role`, `require_service`,
`optional_token` or `require_refresh_token`. The declaration is recorded on the
view (`Access`), and the web factory checks it before flask-smorest parses the
request's body or query: a request without a valid token is a 401 even when its
input is invalid too.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import json
import logging
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, Response, current_app, g, request
from flask_jwt_extended import (
    JWTManager,
    create_access_token,
    create_refresh_token,
    get_jwt,
    verify_jwt_in_request,
)

from chomik.problems import (
    ForbiddenError,
    UnauthorizedError,
    UnavailableError,
    render_problem,
)

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

ROLES = ("buyer", "seller", "admin")
SERVICE_ROLE = "service"
SERVICE_AUDIENCE = "chomik-internal"
ACCESS_ALGORITHM = "RS256"
SERVICE_ALGORITHM = "HS256"
# Claims every user token carries; one without them is refused even if signed.
REQUIRED_CLAIMS = ("exp", "iat", "sub", "jti")
# Seconds the JWKS client keeps the keys it fetched; a verified token as long.
JWKS_LIFESPAN = 300.0


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
    canonical = json.dumps(
        {k: jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"), sort_keys=True
    )
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def public_jwk(public_pem: bytes) -> dict[str, Any]:
    """The JWK form of a public key, with kid, use and alg."""
    jwk = _rsa_jwk(public_pem)
    jwk.update(kid=_thumbprint(jwk), use="sig", alg=ACCESS_ALGORITHM)
    return jwk


@dataclass(frozen=True)
class SigningKey:
    """The gateway's private key and its kid: what user tokens are signed with."""

    private_pem: bytes
    kid: str


class VerifyingKeys:
    """The public keys that verify user tokens, chosen by the token's `kid`.

    Given keys (the gateway's own), else a PEM file, else the gateway's JWKS,
    fetched when a kid is first seen and cached.
    """

    def __init__(
        self,
        *,
        public_keys: Mapping[str, bytes] | None = None,
        public_key_file: str = "",
        jwks_url: str = "",
    ) -> None:
        self._public_keys = dict(public_keys or {})
        self._public_key: bytes | None = None
        self._jwks: jwt.PyJWKClient | None = None
        if self._public_keys:
            pass  # chosen by kid in key_for
        elif public_key_file:
            self._public_key = Path(public_key_file).read_bytes()
        elif jwks_url:
            self._jwks = jwt.PyJWKClient(
                jwks_url, cache_keys=True, lifespan=JWKS_LIFESPAN, timeout=5
            )

    def key_for(self, header: Mapping[str, Any]) -> Any:
        """The key that verifies a token with this (unverified) header."""
        kid = header.get("kid")
        if self._public_keys:
            if not isinstance(kid, str) or kid not in self._public_keys:
                raise jwt.InvalidTokenError("The token's signing key is unknown")
            return self._public_keys[kid]
        if self._public_key is not None:
            return self._public_key
        if self._jwks is None:
            raise jwt.InvalidTokenError("No key is configured to verify tokens")
        if not isinstance(kid, str):
            raise jwt.InvalidTokenError("The token names no signing key")
        try:
            return self._jwks.get_signing_key(kid).key
        except (jwt.PyJWKClientConnectionError, jwt.PyJWKSetError, ValueError) as exc:
            # Our side cannot check the token just now: not the caller's fault.
            log.warning("the JWKS cannot be fetched: %s", exc)
            raise UnavailableError(
                "The keys that verify tokens cannot be fetched; try again shortly",
                headers={"Retry-After": "5"},
            ) from exc
        except jwt.PyJWKClientError as exc:
            raise jwt.InvalidTokenError("The token's signing key is unknown") from exc


class VerifiedTokens:
    """Tokens whose signature and claims were checked, until each one expires.

    A client sends the same access token with every request for its lifetime;
    checking an RS256 signature and the claims again each time is most of what
    authenticating a request costs. The key is the whole token, signature
    included, so only those exact bytes are ever taken as verified; expiry is
    still checked on every use, and revocation is not remembered here at all.
    A token is verified again at least every `recheck` seconds, so one signed by
    a key withdrawn from the JWKS stops being accepted as soon as the JWKS
    client's own cache of keys lets it go (both: 5 minutes).
    """

    def __init__(self, size: int = 4096, recheck: float = JWKS_LIFESPAN) -> None:
        self._size = size
        self._recheck = recheck
        # token -> (claims, until when they stand without a new check)
        self._claims: OrderedDict[str, tuple[dict[str, Any], float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, token: str) -> dict[str, Any] | None:
        """The claims of a token verified before and not expired yet."""
        now = time.time()
        with self._lock:
            found = self._claims.get(token)
            if found is None:
                return None
            claims, until = found
            # PyJWT's own comparison for `exp`.
            if not (now < int(claims["exp"]) and now < until):
                del self._claims[token]
                return None
            self._claims.move_to_end(token)
        return dict(claims)

    def put(self, token: str, claims: Mapping[str, Any]) -> None:
        """Remember a token that has just been verified."""
        if not isinstance(claims.get("exp"), int | float):
            return
        with self._lock:
            self._claims[token] = (dict(claims), time.time() + self._recheck)
            self._claims.move_to_end(token)
            while len(self._claims) > self._size:
                self._claims.popitem(last=False)


@dataclass
class TokenAuthority:
    """What an app verifies (and, in the gateway, signs) tokens with."""

    keys: VerifyingKeys
    service_secret: str
    is_revoked: Callable[[Mapping[str, Any]], bool] | None = None
    signing: SigningKey | None = None
    verified: VerifiedTokens = field(default_factory=VerifiedTokens)


def authority(app: Flask | None = None) -> TokenAuthority:
    """The token authority of the current (or given) app."""
    return (app or current_app).extensions["chomik.auth"]  # type: ignore[no-any-return]


def init_tokens(
    app: Flask,
    *,
    issuer: str,
    audience: str,
    keys: VerifyingKeys,
    service_secret: str,
    is_revoked: Callable[[Mapping[str, Any]], bool] | None = None,
    signing: SigningKey | None = None,
) -> TokenAuthority:
    """Set up flask-jwt-extended on an app; call again to change keys or loaders."""
    app.config.update(
        JWT_ALGORITHM=ACCESS_ALGORITHM,
        JWT_DECODE_ALGORITHMS=[ACCESS_ALGORITHM],
        JWT_ENCODE_ISSUER=issuer,
        JWT_DECODE_ISSUER=issuer,
        JWT_ENCODE_AUDIENCE=audience,
        JWT_DECODE_AUDIENCE=audience,
        JWT_TOKEN_LOCATION=["headers"],
        # Tokens travel in headers and bodies, never cookies: no CSRF claim (a
        # random one would also make a retried refresh's answer differ).
        JWT_COOKIE_CSRF_PROTECT=False,
        JWT_IDENTITY_CLAIM="sub",
    )
    state = TokenAuthority(keys, service_secret, is_revoked, signing)
    app.extensions["chomik.auth"] = state
    if "flask-jwt-extended" not in app.extensions:
        _manager().init_app(app)
    return state


class _Manager(JWTManager):
    """flask-jwt-extended's manager, decoding each token once until it expires."""

    def _decode_jwt_from_config(
        self, encoded_token: str, csrf_value: Any = None, allow_expired: bool = False
    ) -> dict[str, Any]:
        verified = authority().verified
        cached = not allow_expired and csrf_value is None  # no CSRF check skipped
        if cached and (claims := verified.get(encoded_token)) is not None:
            return claims
        claims = super()._decode_jwt_from_config(
            encoded_token, csrf_value, allow_expired
        )
        if cached:
            verified.put(encoded_token, claims)
        return claims


@functools.cache
def _manager() -> JWTManager:
    """One manager for every app: its loaders read the current app's authority."""
    manager = _Manager()
    manager.decode_key_loader(lambda header, _claims: authority().keys.key_for(header))
    manager.encode_key_loader(lambda _identity: _signing().private_pem)
    manager.additional_headers_loader(lambda _identity: {"kid": _signing().kid})
    manager.token_in_blocklist_loader(_in_blocklist)
    manager.token_verification_loader(lambda _header, claims: _has_required(claims))
    manager.unauthorized_loader(
        lambda _reason: _refusal("A bearer access token is required")
    )
    manager.invalid_token_loader(lambda _reason: _refusal("The token is invalid"))
    manager.expired_token_loader(
        lambda _header, claims: _refusal(f"The {_kind(claims)} token has expired")
    )
    manager.revoked_token_loader(
        lambda _header, claims: _refusal(f"The {_kind(claims)} token has been revoked")
    )
    manager.token_verification_failed_loader(
        lambda _header, _claims: _refusal("The token lacks a required claim")
    )
    return manager


def _refusal(detail: str) -> Response:
    return render_problem(UnauthorizedError(detail))


def _kind(claims: Mapping[str, Any]) -> str:
    return "refresh" if claims.get("type") == "refresh" else "access"


def _signing() -> SigningKey:
    signing = authority().signing
    if signing is None:
        raise RuntimeError("this app verifies tokens but does not sign them")
    return signing


def _in_blocklist(_header: Mapping[str, Any], claims: Mapping[str, Any]) -> bool:
    is_revoked = authority().is_revoked
    return is_revoked is not None and is_revoked(claims)


def _lifetime(
    ttl: int, issued_at: int | None, jti: str | None
) -> tuple[dt.timedelta, dict[str, Any]]:
    # The times are set here, not left to the library: it leaves `exp` out when
    # the lifetime is zero. Given the issuing time and jti, the same token comes
    # out again (RS256 signatures are deterministic): a retried refresh gets its
    # same answer.
    now = int(time.time()) if issued_at is None else issued_at
    claims: dict[str, Any] = {"iat": now, "nbf": now, "exp": now + ttl}
    if jti is not None:
        claims["jti"] = jti
    return dt.timedelta(seconds=ttl), claims


def issue_access_token(
    subject: str,
    *,
    roles: Iterable[str],
    ttl: int,
    claims: Mapping[str, Any] | None = None,
    issued_at: int | None = None,
    jti: str | None = None,
) -> str:
    """Sign an access token for a user (in the gateway's app context)."""
    expires, fixed = _lifetime(ttl, issued_at, jti)
    token: str = create_access_token(
        subject,
        expires_delta=expires,
        additional_claims={"roles": sorted(roles), **(claims or {}), **fixed},
    )
    return token


def issue_refresh_token(
    subject: str,
    *,
    ttl: int,
    claims: Mapping[str, Any] | None = None,
    issued_at: int | None = None,
    jti: str | None = None,
) -> str:
    """Sign a refresh token for a user (in the gateway's app context)."""
    expires, fixed = _lifetime(ttl, issued_at, jti)
    token: str = create_refresh_token(
        subject, expires_delta=expires, additional_claims={**(claims or {}), **fixed}
    )
    return token


def issue_service_token(secret: str, service: str, ttl: int = 300) -> str:
    """Sign a short HS256 token naming the calling service (no app needed)."""
    now = int(time.time())
    claims = {
        "sub": f"service:{service}",
        "roles": [SERVICE_ROLE],
        "iat": now,
        "exp": now + ttl,
        "aud": SERVICE_AUDIENCE,
        "type": "service",
    }
    return jwt.encode(claims, secret, algorithm=SERVICE_ALGORITHM)


def verify_service_token(token: str, secret: str) -> Principal:
    """Check a service token: HS256 under the shared secret, for internal calls."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[SERVICE_ALGORITHM],
            audience=SERVICE_AUDIENCE,
            options={"require": ["exp", "sub"]},
        )
    except jwt.InvalidTokenError as exc:
        raise UnauthorizedError("The service token is invalid") from exc
    if claims.get("type") != "service":
        raise UnauthorizedError("This is not a service token")
    return Principal(id=str(claims["sub"]), roles=frozenset({SERVICE_ROLE}))


def bearer_token() -> str | None:
    """The bearer token of the current request, if any (service tokens)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _principal(claims: Mapping[str, Any]) -> Principal:
    """The user of verified claims; 401 if they are not of the shapes we sign."""
    roles, sid = claims.get("roles") or [], claims.get("sid") or ""
    fields = (claims["sub"], claims["jti"], sid)
    if not (
        isinstance(roles, list)
        and all(isinstance(role, str) for role in roles)
        and all(isinstance(field, str) for field in fields)
        and isinstance(claims["exp"], int | float)
    ):
        raise UnauthorizedError("The token's claims are malformed")
    return Principal(
        id=claims["sub"],
        roles=frozenset(roles),
        jti=claims["jti"],
        expires_at=int(claims["exp"]),
        session_id=sid,
    )


# One bearer token; the scheme's case does not matter (RFC 9110, 11.1).
_ONE_BEARER = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr] ([A-Za-z0-9_.~+/=-]+)")


def optional_user() -> Principal | None:
    """The authenticated user, or None for a request without credentials.

    Credentials that are not one bearer token are a 401, as an invalid token is:
    `Basic ...`, or two tokens (flask-jwt-extended would read that as none, so a
    bad token sent beside a good one would pass as an anonymous request).
    """
    if "chomik_user" not in g:
        credentials = request.headers.get("Authorization", "").strip()
        # flask-jwt-extended takes the one bearer token of a comma-separated list
        # (`Bearer <token>, Basic ...`) and reads two as none: either is refused.
        one = _ONE_BEARER.fullmatch(credentials)
        if credentials and one is None:
            raise UnauthorizedError(
                "The Authorization header must hold one token, as `Bearer <token>`"
            )
        if one is not None and (known := _known_access_token(one.group(1))):
            g.chomik_user = _principal(known)
        else:
            if one is not None:  # flask-jwt-extended matches the scheme exactly
                request.environ["HTTP_AUTHORIZATION"] = f"Bearer {one.group(1)}"
            found = verify_jwt_in_request(optional=True)
            g.chomik_user = None if found is None else _principal(get_jwt())
    user: Principal | None = g.chomik_user
    return user


def _known_access_token(token: str) -> dict[str, Any] | None:
    """The claims of an access token verified before, if it is one and not revoked.

    What flask-jwt-extended checks of a token besides its signature and expiry
    (its type, the claims required) depends on the token's bytes alone, and
    these were verified before: only revocation is asked again. Parsing the
    token's header anew, which PyJWT does character by character, cost the
    gateway a tenth of its CPU per request. Anything else (an unknown token, a
    refresh token, a claim missing) takes flask-jwt-extended's whole way.
    """
    claims = authority().verified.get(token)
    if claims is None or _kind(claims) != "access" or not _has_required(claims):
        return None
    if _in_blocklist({}, claims):
        raise UnauthorizedError("The access token has been revoked")
    return claims


def _has_required(claims: Mapping[str, Any]) -> bool:
    return all(claims.get(name) for name in REQUIRED_CLAIMS)


def current_user() -> Principal:
    """The authenticated user; 401 when there is none."""
    user = optional_user()
    if user is None:
        if verify_jwt_in_request() is None:  # raises: the unauthorized loader
            raise UnauthorizedError("A bearer access token is required")
        user = g.chomik_user = _principal(get_jwt())
    return user


def refresh_claims() -> dict[str, Any]:
    """The claims of the request's refresh token (its JSON `refresh_token`)."""
    if "chomik_refresh" not in g:
        # flask-jwt-extended reads the key of whatever JSON came: a number or a
        # list would raise inside it (a 500), and so would a token PyJWT cannot
        # encode (a JWT is ASCII; JSON's "\ud800" escape is not even UTF-8).
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise UnauthorizedError("A refresh token is required")
        token = body.get("refresh_token")
        if not isinstance(token, str):  # a list or an object: a 500 inside PyJWT
            raise UnauthorizedError("A refresh token is required")
        if not token.isascii():
            raise UnauthorizedError("The token is invalid")
        if verify_jwt_in_request(refresh=True, locations=["json"]) is None:
            raise UnauthorizedError("A refresh token is required")
        g.chomik_refresh = dict(get_jwt())
    claims: dict[str, Any] = g.chomik_refresh
    return claims


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
    empty), "service" (a service token), "optional" (anonymous, but a presented
    token must be valid) or "refresh" (a valid refresh token in the JSON body).
    """

    kind: str
    roles: tuple[str, ...] = ()

    def check(self) -> None:
        """Raise 401 or 403 unless the current request satisfies this access."""
        if self.kind == "optional":
            optional_user()
        elif self.kind == "refresh":
            refresh_claims()
        elif self.kind == "service":
            token = bearer_token()
            if token is None:
                raise UnauthorizedError("A service token is required")
            if "chomik_service" not in g:
                g.chomik_service = verify_service_token(
                    token, authority().service_secret
                )
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


def require_refresh_token(view: Callable[P, R]) -> Callable[P, R]:
    """Let through only a valid, unrevoked refresh token (in the JSON body)."""
    return _guarded(Access("refresh"), view)
