"""Shared mechanics of the typed HTTP clients: one pool, timeouts, retries, errors.

Every call has a timeout. Only idempotent calls are retried (GET, PUT, DELETE, or a
POST the remote side makes idempotent, such as a reservation keyed by order id),
after a transport failure or a 502/503/504. The caller's request id is passed on
in `X-Request-Id`. A `problem+json` answer becomes a typed exception:

    ClientError
    ├── TransportError            no answer: connection refused, reset, timeout  (T)
    └── ResponseError             an error answer; carries status and problem
        ├── BadRequestError       400, 422
        ├── UnauthorizedError     401
        ├── ForbiddenError        403
        ├── NotFoundError         404
        ├── ConflictError         409
        ├── TooManyRequestsError  429                                            (T)
        ├── ServerError           5xx                                            (T)
        └── MalformedResponseError  a success answer that is not what was promised

(T): also a `chomik.transient.TransientError`: the remote service is unavailable for
now, so a consumer retries the message for as long as that lasts instead of
dead-lettering it. A success answer whose body is not JSON or lacks a field the
client maps (`decode`) raises `MalformedResponseError`, never a bare `KeyError`.

Each client maps the remote problem `type`s it knows to subclasses of these.
"""

from __future__ import annotations

import json as jsonlib
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.client import HTTPException, HTTPMessage
from typing import Any, ClassVar, Protocol, TypeVar

from chomik.auth import issue_service_token
from chomik.connections import ConnectionPool
from chomik.logs import REQUEST_ID_HEADER, current_request_id
from chomik.transient import TransientError

__all__ = [
    "Client",
    "ServiceClient",
    "BadRequestError",
    "ClientError",
    "ConflictError",
    "ForbiddenError",
    "HttpClient",
    "MalformedResponseError",
    "NotFoundError",
    "PooledTransport",
    "Response",
    "ResponseError",
    "ServerError",
    "TooManyRequestsError",
    "Transport",
    "TransportError",
    "UnauthorizedError",
]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRY_STATUSES = frozenset({502, 503, 504})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})  # a length even when empty
# Kept as they are in a path (RFC 3986: path characters, and `%` of escapes).
_PATH_SAFE = "/!$&'()*+,;=:@~%"
# A kept-alive connection idle longer than this is closed, not reused: well under
# the services' keep-alive (gunicorn's, 5 s), so the client is the one to close.
IDLE_REUSE = 2.0
POOL_SIZE = 16

T = TypeVar("T")


class ClientError(Exception):
    """A call to another service failed."""


class TransportError(ClientError, TransientError):
    """The remote service did not answer (connection failure or timeout)."""


class ResponseError(ClientError):
    """The remote service answered with an error status."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        self.status = status
        self.problem = dict(problem)
        self.type = str(problem.get("type", ""))
        self.detail = str(problem.get("detail") or problem.get("title") or status)
        super().__init__(f"{status} {self.type}: {self.detail}")


class BadRequestError(ResponseError):
    """400 or 422: the request was refused as invalid."""


class UnauthorizedError(ResponseError):
    """401: the credentials were missing or refused."""


class ForbiddenError(ResponseError):
    """403: the caller may not do this."""


class NotFoundError(ResponseError):
    """404: no such object (or not the caller's)."""


class ConflictError(ResponseError):
    """409: the request conflicts with the object's state."""


class TooManyRequestsError(ResponseError, TransientError):
    """429: the remote service is overloaded or rate-limits the caller."""


class ServerError(ResponseError, TransientError):
    """5xx: the remote service failed or is unavailable."""


class MalformedResponseError(ResponseError):
    """A success answer whose body is not JSON or lacks what the client maps."""


_BY_STATUS: dict[int, type[ResponseError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    422: BadRequestError,
    429: TooManyRequestsError,
}


@dataclass(frozen=True)
class Response:
    """A service's answer, read whole."""

    method: str
    url: str
    status_code: int
    headers: HTTPMessage | Mapping[str, str]  # looked up by any case of the name
    content: bytes

    def json(self) -> Any:
        """The body as JSON; ValueError if it is not."""
        return jsonlib.loads(self.content)


class Transport(Protocol):
    """Sends one request to one service and returns its answer read whole.

    `target` is the path with its query. A failure to get an answer raises
    `OSError` or `http.client.HTTPException`.
    """

    def __call__(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes | None
    ) -> Response: ...

    def close(self) -> None: ...


class PooledTransport:
    """The transport of every client: the kit's pool of kept-alive connections."""

    def __init__(self, base_url: str, *, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.pool = ConnectionPool(
            self.base_url,
            connect_timeout=timeout,
            read_timeout=timeout,
            idle_reuse=IDLE_REUSE,
            size=POOL_SIZE,
        )

    def __call__(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes | None
    ) -> Response:
        conn, answer = self.pool.exchange(method, target, headers.items(), body)
        try:
            content = answer.read()
        finally:
            self.pool.release(conn, answer)  # closed unless read whole
        return Response(
            method, f"{self.base_url}{target}", answer.status, answer.headers, content
        )

    def close(self) -> None:
        self.pool.close()


class HttpClient:
    """One pooled transport to one service, with the rules above."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 5.0,
        retries: int = 2,
        backoff: float = 0.1,
        transport: Transport | None = None,
        problem_types: Mapping[str, type[ResponseError]] | None = None,
        token: Callable[[], str] | None = None,
    ) -> None:
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.transport = transport or PooledTransport(base_url, timeout=timeout)
        self.problem_types = dict(problem_types or {})
        self.token = token

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        idempotent: bool | None = None,
        authenticated: bool = True,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """Send one call (retrying if idempotent) and return a successful answer.

        `headers` are added to (and override, whatever their case) the client's
        own, e.g. a user's `Authorization` instead of the service token. `params`
        become the query (a list value repeats its name; None leaves it out).
        """
        method = method.upper()
        retry = method in IDEMPOTENT_METHODS if idempotent is None else idempotent
        attempts = 1 + (self.retries if retry else 0)
        target = urllib.parse.quote(path, safe=_PATH_SAFE)
        query = {k: v for k, v in (params or {}).items() if v is not None}
        if query:
            target += "?" + urllib.parse.urlencode(query, doseq=True)
        sent = self._headers(authenticated)
        sent.update((name.title(), value) for name, value in (headers or {}).items())
        body = b"" if method in BODY_METHODS else None  # its length said, 0
        if json is not None:
            body = jsonlib.dumps(json, allow_nan=False).encode()
            sent["Content-Type"] = "application/json"
        for attempt in range(1, attempts + 1):
            try:
                response = self.transport(method, target, sent, body)
            except (OSError, HTTPException) as exc:
                if attempt == attempts:
                    raise TransportError(f"{method} {path}: {exc!r}") from exc
            else:
                if response.status_code not in RETRY_STATUSES or attempt == attempts:
                    return self._checked(response)
            time.sleep(self.backoff * 2 ** (attempt - 1))
        raise AssertionError("unreachable")  # pragma: no cover

    def decode(self, response: Response, build: Callable[[Any], T]) -> T:
        """Map a success answer's JSON body with `build`; MalformedResponseError if
        the body is not JSON or not the shape `build` expects."""
        try:
            return build(response.json())
        except (ValueError, KeyError, IndexError, TypeError, AttributeError,
                ArithmeticError) as exc:  # fmt: skip
            detail = f"unexpected answer to {response.method} {response.url}"
            raise MalformedResponseError(
                response.status_code,
                {"type": "malformed-response", "detail": f"{detail}: {exc!r}"},
            ) from exc

    def _headers(self, authenticated: bool) -> dict[str, str]:
        headers = {"Accept": "application/json, application/problem+json"}
        request_id = current_request_id()
        if request_id:
            headers[REQUEST_ID_HEADER] = request_id
        if authenticated and self.token is not None:
            headers["Authorization"] = f"Bearer {self.token()}"
        return headers

    def _checked(self, response: Response) -> Response:
        if response.status_code < 400:
            return response
        try:
            problem = response.json()
        except ValueError:
            problem = {}
        if not isinstance(problem, dict):
            problem = {}
        kind = self.problem_types.get(str(problem.get("type", "")))
        if kind is None:
            status = response.status_code
            kind = (
                ServerError if status >= 500 else _BY_STATUS.get(status, ResponseError)
            )
        raise kind(response.status_code, problem)

    def close(self) -> None:
        """Close the pooled connections."""
        self.transport.close()


class ServiceToken:
    """The caller's service token for internal calls, issued again before it expires."""

    def __init__(self, secret: str, caller: str, *, ttl: int = 300) -> None:
        self._secret = secret
        self._caller = caller
        self._ttl = ttl
        self._token = ("", 0.0)

    def __call__(self) -> str:
        token, renew_at = self._token
        if time.monotonic() > renew_at:
            token = issue_service_token(self._secret, self._caller, ttl=self._ttl)
            self._token = (token, time.monotonic() + self._ttl / 2)
        return token


class Client:
    """Base of the typed clients: one pooled `HttpClient` that maps the remote
    side's problem types (`PROBLEM_TYPES`) to exceptions."""

    PROBLEM_TYPES: ClassVar[Mapping[str, type[ResponseError]]] = {}

    def __init__(
        self,
        base_url: str,
        *,
        token: Callable[[], str] | None = None,
        timeout: float = 5.0,
        retries: int = 2,
        transport: Transport | None = None,
    ) -> None:
        self.http = HttpClient(
            base_url,
            timeout=timeout,
            retries=retries,
            transport=transport,
            problem_types=self.PROBLEM_TYPES,
            token=token,
        )

    def close(self) -> None:
        """Close the pooled connections."""
        self.http.close()


class ServiceClient(Client):
    """A client of one of our own services, calling with this caller's service token."""

    def __init__(
        self,
        base_url: str,
        *,
        service_secret: str,
        caller: str,
        timeout: float = 5.0,
        retries: int = 2,
        transport: Transport | None = None,
    ) -> None:
        super().__init__(
            base_url,
            token=ServiceToken(service_secret, caller),
            timeout=timeout,
            retries=retries,
            transport=transport,
        )
