"""The reverse proxy's route table, upstream calls and the bodies streamed through.

Every public `/api/v1` path belongs to one service by an explicit prefix; paths
not in the table (internal endpoints such as reservations) are never routed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import urllib3
from urllib3 import HTTPConnectionPool, HTTPHeaderDict, HTTPSConnectionPool
from urllib3.connection import HTTPConnection
from urllib3.exceptions import HTTPError, NewConnectionError, ProtocolError
from urllib3.exceptions import TimeoutError as UpstreamTimeout
from urllib3.util import parse_url

from apps.gateway.errors import UpstreamTimeoutError, UpstreamUnavailableError
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
# Sent a second time when the service dropped the connection without an answer:
# methods that change nothing, without a body (nothing of it has been read away).
RESENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


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


class _RecentConnections:
    """A pool that opens anew a connection idle longer than `idle_reuse` seconds.

    A service closes a kept-alive connection idle for its keep-alive (gunicorn: 5 s).
    One closed just as the pool hands it out loses the request sent on it: a 502
    the client must resend. Reusing only connections idle for less than that, the
    proxy is always the one to close.
    """

    idle_reuse: float

    def _get_conn(self, timeout: float | None = None) -> HTTPConnection:
        conn: HTTPConnection = super()._get_conn(timeout)  # type: ignore[misc]
        idle_since = getattr(conn, "idle_since", None)
        if idle_since is not None and time.monotonic() - idle_since > self.idle_reuse:
            conn.close()  # connected again when the request is sent
        return conn

    def _put_conn(self, conn: HTTPConnection | None) -> None:
        if conn is not None:
            conn.idle_since = time.monotonic()  # type: ignore[attr-defined]
        super()._put_conn(conn)  # type: ignore[misc]


def _recent_pools(idle_reuse: float) -> dict[str, type[HTTPConnectionPool]]:
    return {
        scheme: type(
            f"Recent{base.__name__}",
            (_RecentConnections, base),
            {"idle_reuse": idle_reuse},
        )
        for scheme, base in (
            ("http", HTTPConnectionPool),
            ("https", HTTPSConnectionPool),
        )
    }


class Forwarder:
    """A pool of connections to each service, with connect and read timeouts.

    urllib3 itself, which `requests` is built on: a proxy passes bytes and
    headers through as they are, so it needs none of what `requests` adds
    (cookies, redirects, environment settings, hooks), which cost more CPU than
    the call. Each service's pool is made on its first request, and called
    straight with the path: no URL to parse and no pool to look up per request.
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
        self._classes = _recent_pools(idle_reuse)
        # urllib3 itself retries nothing: a GET that timed out would be sent
        # again, as slow (`send` resends a safe request that got no answer at
        # all, once). No proxy or .netrc from the environment: the services'
        # addresses are the settings'.
        self._timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        self._pool_size = pool_size
        # service -> (its base URL, the pool to it, the base URL's path)
        self._pools: dict[str, tuple[str, HTTPConnectionPool, str]] = {}

    def _pool(self, service: str) -> tuple[HTTPConnectionPool, str]:
        """The service's pool and path prefix (a new pool when its URL changed)."""
        base = self.upstreams[service]
        known = self._pools.get(service)
        if known is not None and known[0] == base:
            return known[1], known[2]
        url = parse_url(base)
        if url.host is None:
            raise ValueError(f"the {service} service's URL {base!r} has no host")
        pool = self._classes[url.scheme or "http"](
            url.host,
            url.port,
            maxsize=self._pool_size,
            retries=False,
            timeout=self._timeout,
        )
        self._pools[service] = (base, pool, (url.path or "").rstrip("/"))
        if known is not None:
            known[1].close()
        return pool, self._pools[service][2]

    def send(
        self,
        service: str,
        method: str,
        path: str,
        *,
        query: str,
        headers: list[tuple[str, str]],
        body: Body | Iterator[bytes] | None,
    ) -> urllib3.BaseHTTPResponse:
        """Send a request to a service and return its streaming response.

        A body of unknown length goes chunked.
        """
        pool, prefix = self._pool(service)
        url = f"{prefix}{path}?{query}" if query else f"{prefix}{path}"
        fields = HTTPHeaderDict(headers)
        if isinstance(body, Body):
            fields["Content-Length"] = str(len(body))
        try:
            try:
                return self._open(pool, method, url, fields, body)
            except ProtocolError:
                # Dropped without an answer: mostly a kept-alive connection the
                # service closed (its keep-alive timeout) just as the pool handed
                # it out. A request that changes nothing goes once more, on the
                # pool's next connection (urllib3 skips those found closed); any
                # other is the client's to send again.
                if body is not None or method not in RESENT_METHODS:
                    raise
                return self._open(pool, method, url, fields, body)
        except NewConnectionError as exc:  # before TimeoutError: it is one too
            raise UpstreamUnavailableError(
                service, f"The {service} service cannot be reached"
            ) from exc
        except UpstreamTimeout as exc:
            raise UpstreamTimeoutError(
                service, f"The {service} service did not answer in time"
            ) from exc
        except HTTPError as exc:
            raise UpstreamUnavailableError(
                service, f"The {service} service cannot be reached"
            ) from exc

    @staticmethod
    def _open(
        pool: HTTPConnectionPool,
        method: str,
        url: str,
        headers: HTTPHeaderDict,
        body: Body | Iterator[bytes] | None,
    ) -> urllib3.BaseHTTPResponse:
        return pool.urlopen(
            method,
            url,
            headers=headers,
            body=body,
            preload_content=False,
            decode_content=False,
            redirect=False,
            assert_same_host=False,
        )

    def close(self) -> None:
        """Close every pooled connection."""
        for _, pool, _ in self._pools.values():
            pool.close()


def relay(response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
    """The upstream body as it arrives, still encoded (gzip stays gzip).

    Read whole, the connection goes back to the pool; cut short (the client
    went away), it is closed, since the rest of the body is still on it.
    """
    try:
        yield from response.stream(CHUNK_SIZE, decode_content=False)
    finally:
        response.close()
