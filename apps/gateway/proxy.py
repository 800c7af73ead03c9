"""The reverse proxy's route table, upstream calls and the bodies streamed through.

Every public `/api/v1` path belongs to one service by an explicit prefix; paths
not in the table (internal endpoints such as reservations) are never routed.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.client import HTTPConnection, HTTPException, HTTPResponse

from apps.gateway.errors import UpstreamTimeoutError, UpstreamUnavailableError
from chomik.connections import ConnectionPool
from chomik.web import check_body_length, reading_body

# RFC 9110 §7.6.1: meaningful for one connection only, never forwarded.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
CHUNK_SIZE = 64 * 1024
# Kept as they are in a query passed on (RFC 3986: query characters, and `%` of the
# escapes already there).
_QUERY_SAFE = "!$&'()*+,;=:@/?%"


@dataclass(frozen=True)
class Route:
    """Paths matching `pattern` (and below it) go to `service`."""

    pattern: str
    service: str
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Compiled once: every proxied request tries the table.
        regex = re.sub(r"\{[^/}]+\}", "[^/]+", self.pattern)
        object.__setattr__(self, "regex", re.compile(f"{regex}(/.*)?"))

    def matches(self, path: str) -> bool:
        return self.regex.fullmatch(path) is not None


# More specific first: an order's payment belongs to the payment service.
ROUTES: tuple[Route, ...] = (
    Route("/orders/{id}/payment", "payment"),
    Route("/products", "storage"),
    Route("/addresses", "delivery"),
    Route("/shipments", "delivery"),
    Route("/orders", "orders"),
    Route("/payments", "payment"),
)


def route(path: str) -> str | None:
    """The service owning a path below /api/v1, or None when it is not public.

    A path with an empty, `.` or `..` segment is never routed: the HTTP client
    would normalise it into another path (`/products/../internal/...`), past
    this table.
    """
    if any(segment in {"", ".", ".."} for segment in path.split("/")[1:]):
        return None
    for candidate in ROUTES:
        if candidate.matches(path):
            return candidate.service
    return None


def end_to_end(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Drop hop-by-hop headers, including those the Connection header names."""
    pairs = list(headers)
    named = {
        token.strip().lower()
        for name, value in pairs
        if name.lower() == "connection"
        for token in value.split(",")
    }
    return [
        (name, value)
        for name, value in pairs
        if name.lower() not in HOP_BY_HOP and name.lower() not in named
    ]


class Body:
    """A request body streamed through in chunks, with its length when known."""

    def __init__(self, stream: object, length: int) -> None:
        self._stream = stream
        self._length = length

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[bytes]:
        return chunks(self._stream, self._length)


def chunks(stream: object, length: int | None = None) -> Iterator[bytes]:
    """The client's body in chunks as it arrives (one of unknown length goes chunked).

    A body cut short or with broken chunked framing raises the kit's 400 while it is
    being sent on: the service's connection is then closed mid-body, so the service
    sees its body cut short too, and refuses it as well.
    """
    read = stream.read  # type: ignore[attr-defined]
    received = 0
    while True:
        with reading_body():  # each read, never across the yield
            chunk = read(CHUNK_SIZE)
        if not chunk:
            break
        received += len(chunk)
        yield chunk
    check_body_length(received, length)


class Upstream:
    """A service's answer: status and headers read, the body still on the wire.

    Read whole, the connection goes back to the pool; closed before that (the
    client went away), it is closed, since the rest of the body is still on it.
    """

    def __init__(
        self, pool: ConnectionPool, conn: HTTPConnection, response: HTTPResponse
    ) -> None:
        self._pool, self._response = pool, response
        self._conn: HTTPConnection | None = conn
        self.status = response.status
        self.headers: list[tuple[str, str]] = response.getheaders()

    def body(self) -> Iterator[bytes]:
        """The body as it arrives, still encoded (gzip stays gzip)."""
        try:
            while chunk := self._response.read1(CHUNK_SIZE):
                yield chunk
        finally:
            self.close()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._pool.release(conn, self._response)


class Forwarder:
    """The kit's pool of kept-alive connections to each service, with connect and
    read timeouts: a proxy passes bytes and headers through as they are.

    Each service's pool is made on its first request, and called straight with
    the path: no URL to parse and no pool to look up per request.
    """

    def __init__(
        self,
        upstreams: Mapping[str, str],
        *,
        connect_timeout: float,
        read_timeout: float,
        idle_reuse: float,
        pool_size: int = 32,
    ) -> None:
        self.upstreams = dict(upstreams)
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._idle_reuse = idle_reuse
        self._pool_size = pool_size
        # service -> (its base URL, the pool to it)
        self._pools: dict[str, tuple[str, ConnectionPool]] = {}

    def _pool(self, service: str) -> ConnectionPool:
        """The service's pool (a new pool when its URL changed)."""
        base = self.upstreams[service]
        known = self._pools.get(service)
        if known is not None and known[0] == base:
            return known[1]
        try:
            pool = ConnectionPool(
                base,
                connect_timeout=self._connect_timeout,
                read_timeout=self._read_timeout,
                idle_reuse=self._idle_reuse,
                size=self._pool_size,
            )
        except ValueError as exc:
            raise ValueError(f"the {service} service's URL: {exc}") from exc
        self._pools[service] = (base, pool)
        if known is not None:
            known[1].close()
        return pool

    def send(
        self,
        service: str,
        method: str,
        path: str,
        *,
        query: str,
        headers: list[tuple[str, str]],
        body: Body | Iterator[bytes] | None,
    ) -> Upstream:
        """Send a request to a service and return its answer, the body unread.

        A body of unknown length goes chunked.
        """
        pool = self._pool(service)
        url = path
        if query:  # as sent, but with what a request line cannot hold escaped
            url += "?" + urllib.parse.quote(query, _QUERY_SAFE, encoding="latin-1")
        try:
            conn, response = pool.exchange(
                method, url, headers, body, chunked=not isinstance(body, Body | None)
            )
        except TimeoutError as exc:
            raise UpstreamTimeoutError(
                service, f"The {service} service did not answer in time"
            ) from exc
        except (OSError, HTTPException) as exc:
            raise UpstreamUnavailableError(
                service, f"The {service} service cannot be reached"
            ) from exc
        return Upstream(pool, conn, response)

    def close(self) -> None:
        """Close every pooled connection."""
        for _, pool in self._pools.values():
            pool.close()
