"""Problem types of the gateway.

Problem
├── EmailTakenError            409 email-taken
├── InvalidCredentialsError    401 invalid-credentials
├── InvalidRefreshTokenError   401 invalid-refresh-token
├── TooManyRequestsError       429 too-many-requests
├── UnknownRouteError          404 not-found
├── UpstreamUnavailableError   502 bad-gateway
├── UpstreamTimeoutError       504 gateway-timeout
├── InvalidSignatureError      401 invalid-signature
└── NotQueuedError             503 unavailable (with Retry-After)
"""

from __future__ import annotations

from typing import Any

from chomik.problems import (
    ConflictError,
    NotFoundError,
    Problem,
    UnauthorizedError,
    UnavailableError,
)


class EmailTakenError(ConflictError):
    type, title = "email-taken", "E-mail already registered"


class InvalidCredentialsError(UnauthorizedError):
    type, title = "invalid-credentials", "Wrong e-mail or password"


class InvalidRefreshTokenError(UnauthorizedError):
    type, title = "invalid-refresh-token", "Refresh token refused"


class TooManyRequestsError(Problem):
    status, type, title = 429, "too-many-requests", "Too many requests"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


class UnknownRouteError(NotFoundError):
    title = "No such API path"


class _UpstreamError(Problem):
    def __init__(self, service: str, detail: str, **extra: Any) -> None:
        super().__init__(detail, service=service, **extra)


class UpstreamUnavailableError(_UpstreamError):
    status, type, title = 502, "bad-gateway", "Service unreachable"


class UpstreamTimeoutError(_UpstreamError):
    status, type, title = 504, "gateway-timeout", "Service timed out"


class InvalidSignatureError(Problem):
    status, type, title = 401, "invalid-signature", "Signature refused"

    def __init__(self, detail: str) -> None:
        # 401 requires a challenge; the scheme is our signature header, not a token.
        super().__init__(detail, headers={"WWW-Authenticate": "X-Signature"})


class NotQueuedError(UnavailableError):
    title = "Callback not queued"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})
