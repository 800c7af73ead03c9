"""Kept-alive HTTP connections to one service, over the standard library's `http.client`.

The gateway's proxy and the typed clients call our services through a
`ConnectionPool`: a call takes a connection, sends, reads the answer and gives the
connection back. Nothing of urllib3 or `requests` is needed between services
(redirects, cookies, proxies from the environment, header containers), and they
cost more CPU than the call itself.

A service closes a kept-alive connection idle for its keep-alive (gunicorn: 5 s).
One closed just as the pool hands it out loses the request sent on it. The pool
hands out only connections idle for less than `idle_reuse` seconds, so the caller
is always the one to close, and none the service has already closed (restarted,
say): those are readable at EOF. A request that changes nothing is sent once more
on a new connection when a reused one was dropped without an answer anyway.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections.abc import Iterable, Sized
from http.client import BadStatusLine, HTTPConnection, HTTPResponse, HTTPSConnection

from chomik.db import readable

__all__ = ["ConnectionPool", "RESENT_METHODS"]

# Sent a second time when the service dropped a reused connection without an
# answer: methods that change nothing, without a body (nothing of it read away).
RESENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class ConnectionPool:
    """Kept-alive connections to the service at `url`, the most recently used first.

    `exchange` and `release` raise what `http.client` and the socket raise:
    `OSError` (`TimeoutError`, `ConnectionError`) or `http.client.HTTPException`
    when no answer comes, `ValueError` for a request that cannot go on the wire.
    """

    def __init__(
        self, url: str, *, connect_timeout: float, read_timeout: float,
        idle_reuse: float, size: int,
    ) -> None:  # fmt: skip
        parts = urllib.parse.urlsplit(url)
        if not parts.hostname:
            raise ValueError(f"the URL {url!r} has no host")
        self._kind = HTTPSConnection if parts.scheme == "https" else HTTPConnection
        self._address = (parts.hostname, parts.port)
        self.prefix = parts.path.rstrip("/")
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._idle_reuse = idle_reuse
        self._size = size
        self._idle: list[tuple[float, HTTPConnection]] = []  # oldest first
        self._lock = threading.Lock()
        self._closed = False

    def exchange(
        self,
        method: str,
        url: str,
        headers: Iterable[tuple[str, str]],
        body: bytes | Iterable[bytes] | None = None,
        *,
        chunked: bool = False,
    ) -> tuple[HTTPConnection, HTTPResponse]:
        """Send a request and return its connection and answer, the body unread.

        `url` is the path below the pool's base URL, with its query. A body is
        sent as it is, with its length (`Content-Length`), or chunked when
        `chunked` (its length unknown). Give the connection back with `release`.
        """
        url = f"{self.prefix}{url}"
        if chunked:
            headers = [*headers, ("Transfer-Encoding", "chunked")]
        elif isinstance(body, Sized):
            headers = [*headers, ("Content-Length", str(len(body)))]
        conn, reused = self._get()
        try:
            return conn, self._send(conn, method, url, headers, body, chunked)
        except (ConnectionError, BadStatusLine):
            if not reused or body is not None or method not in RESENT_METHODS:
                raise
            conn = self._get()[0]
            return conn, self._send(conn, method, url, headers, body, chunked)

    def release(self, conn: HTTPConnection, response: HTTPResponse) -> None:
        """Keep a connection whose answer was read whole (if there is room), or
        close it: the rest of a body left unread is still on it."""
        # Nothing left of the body (http.client counts it down; a chunked one is
        # closed at its last chunk; HEAD, 204 and 304 answers have none).
        whole = response.isclosed() or response.length == 0
        response.close()
        if whole and not response.will_close:
            with self._lock:
                if not self._closed and len(self._idle) < self._size:
                    self._idle.append((time.monotonic(), conn))
                    return
        conn.close()

    def close(self) -> None:
        """Close every idle connection, and each in use as it is given back."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for _, conn in idle:
            conn.close()

    def _get(self) -> tuple[HTTPConnection, bool]:
        """A connection, and whether it carried a request before."""
        fresh_since = time.monotonic() - self._idle_reuse
        with self._lock:
            while self._idle:
                idle_since, conn = self._idle.pop()
                if idle_since < fresh_since:  # and so is every older one
                    stale, self._idle = [conn, *(c for _, c in self._idle)], []
                    for old in stale:
                        old.close()
                    break
                if conn.sock is not None and not readable(conn.sock, 0):
                    return conn, True
                conn.close()  # closed by the service, or sent what nobody asked
        return self._kind(*self._address, timeout=self._connect_timeout), False

    def _connect(self, conn: HTTPConnection) -> None:
        """Open a new connection within the connect timeout; then reads get theirs."""
        conn.connect()
        conn.sock.settimeout(self._read_timeout)

    def _send(
        self,
        conn: HTTPConnection,
        method: str,
        url: str,
        headers: Iterable[tuple[str, str]],
        body: bytes | Iterable[bytes] | None,
        chunked: bool,
    ) -> HTTPResponse:
        try:
            if conn.sock is None:
                self._connect(conn)
            conn.putrequest(method, url, skip_accept_encoding=True)
            for name, value in headers:
                conn.putheader(name, value)
            conn.endheaders(body, encode_chunked=chunked)
            return conn.getresponse()
        except BaseException:
            conn.close()  # mid-request: nothing else may go on it
            raise
