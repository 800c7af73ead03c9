"""The reverse proxy against a real service process."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from apps.gateway.proxy import route
from chomik.infra import free_port
from tests.apps.gateway.conftest import dead_url
from tests.apps.gateway.upstream import PLAIN, big_body
from tests.conftest import auth


@pytest.mark.parametrize(
    ("path", "service"),
    [
        ("/products", "storage"),
        ("/products/1f0e", "storage"),
        ("/addresses/abc", "delivery"),
        ("/shipments", "delivery"),
        ("/orders", "orders"),
        ("/orders/42", "orders"),
        ("/orders/42/cancel", "orders"),
        ("/orders/42/payment", "payment"),
        ("/payments/7", "payment"),
        ("/productsx", None),
        ("/reservations", None),
        ("/internal/reservations", None),
        ("/internal/addresses/abc", None),
        ("/callbacks/bank", None),
    ],
)
def test_route_table_sends_each_public_path_to_its_service(path, service):
    assert route(path) == service


def test_large_streamed_response_arrives_intact(client):
    response = client.get("/api/v1/products/big?mb=16")
    assert response.status_code == 200
    body = response.get_data()
    assert len(body) == 16 * 1024 * 1024
    assert hashlib.sha256(body).digest() == hashlib.sha256(big_body(16)).digest()


def test_response_is_streamed_not_buffered(client):
    started = time.monotonic()
    response = client.get("/api/v1/products/drip?pause=1.5", buffered=False)
    chunks = iter(response.response)
    first = next(chunks)
    assert time.monotonic() - started < 1.2
    assert first.startswith(b"first;")
    assert b"".join([first, *chunks]) == b"first;second"
    response.close()


def test_gzip_body_is_passed_on_untouched(client):
    response = client.get("/api/v1/products/gzip", headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 200
    assert response.headers["Content-Encoding"] == "gzip"
    assert int(response.headers["Content-Length"]) == len(response.get_data())
    assert gzip.decompress(response.get_data()) == PLAIN


def test_request_body_reaches_the_service_whole(client):
    body = bytes(range(256)) * 3000
    response = client.post(
        "/api/v1/products/echo?x=1&y=%C3%A9",
        data=body,
        content_type="application/octet-stream",
    )
    seen = response.get_json()
    assert seen["body_length"] == len(body)
    assert seen["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert seen["path"] == "/api/v1/products/echo?x=1&y=%C3%A9"


def test_a_query_is_passed_on_as_sent_with_raw_bytes_escaped(client):
    # As a WSGI server puts raw bytes of the request line: one character each.
    raw = "q=a%20b&raw=\xff\xe9&x=[1]|`"
    response = client.get(
        "/api/v1/products/echo", environ_overrides={"QUERY_STRING": raw}
    )
    assert response.status_code == 200
    assert response.get_json()["path"] == (
        "/api/v1/products/echo?q=a%20b&raw=%FF%E9&x=%5B1%5D%7C%60"
    )


def test_chunked_request_body_is_streamed_through(client):
    body = b"0123456789abcdef" * 5000
    response = client.post(
        "/api/v1/products/echo",
        input_stream=io.BytesIO(body),
        headers={"Transfer-Encoding": "chunked", "Content-Type": "text/plain"},
        # What gunicorn and werkzeug's server say once they de-chunk a body.
        environ_overrides={"wsgi.input_terminated": True},
    )
    seen = response.get_json()
    assert seen["body_length"] == len(body)
    assert seen["headers"]["Transfer-Encoding"] == "chunked"


def test_request_id_and_forwarding_headers_round_trip(client, make_token):
    token = make_token("00000000-0000-0000-0000-0000000000aa", "buyer")
    response = client.get(
        "/api/v1/products/echo",
        headers={
            **auth(token),
            "X-Request-Id": "req-123",
            "Connection": "keep-alive, X-Private-Hop",
            "X-Private-Hop": "secret",
            "Keep-Alive": "timeout=5",
            "Proxy-Authorization": "Basic abc",
        },
    )
    assert response.status_code == 200
    assert response.headers["X-Request-Id"] == "req-123"
    seen = {k.lower(): v for k, v in response.get_json()["headers"].items()}
    assert seen["x-request-id"] == "req-123"
    assert seen["authorization"] == f"Bearer {token}"
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-forwarded-host"] == "localhost"
    for hop in ("x-private-hop", "keep-alive", "proxy-authorization"):
        assert hop not in seen


def test_gateway_assigns_a_request_id_when_none_is_sent(client):
    response = client.get("/api/v1/products/echo")
    sent = response.get_json()["headers"]["X-Request-Id"]
    assert response.headers["X-Request-Id"] == sent
    assert len(sent) >= 16


def test_anonymous_request_passes_and_service_decides(client):
    assert client.get("/api/v1/products").get_json() == {"items": [], "user": None}
    refused = client.post("/api/v1/products", json={"title": "x"})
    assert refused.status_code == 401
    assert refused.mimetype == "application/problem+json"


def test_upstream_down_is_502_naming_the_service(make_gateway):
    client = make_gateway(storage_url=dead_url()).test_client()
    response = client.get("/api/v1/products")
    assert response.status_code == 502
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["type"] == "bad-gateway"
    assert body["service"] == "storage"
    assert "storage" in body["detail"]


KEPT_ALIVE_ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    b"Content-Length: 2\r\nConnection: keep-alive\r\n\r\n{}"
)


@contextlib.contextmanager
def raw_service(serve: Callable[[socket.socket], None]) -> Iterator[str]:
    """A service on a free port whose every connection `serve` handles; its URL."""
    listener = socket.create_server(("127.0.0.1", free_port()))

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


def closing_kept_alive_connections() -> contextlib.AbstractContextManager[str]:
    """A service that answers the first request of a connection, keeps it open,
    and closes it unanswered when a second request comes on it: a keep-alive
    timeout that strikes just as the connection is reused."""

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            conn.sendall(KEPT_ALIVE_ANSWER)
            conn.recv(65536)  # the second request: dropped unanswered

    return raw_service(serve)


def test_a_safe_request_on_a_connection_closed_unanswered_is_sent_again(
    make_gateway,
):
    with closing_kept_alive_connections() as url:
        client = make_gateway(storage_url=url).test_client()
        # Each GET after the first comes on a connection used once, is dropped,
        # and goes again on a new one.
        for _ in range(4):
            assert client.get("/api/v1/products").status_code == 200
        refused = client.post("/api/v1/products")  # never sent twice
        assert refused.status_code == 502
        assert refused.get_json()["type"] == "bad-gateway"
        assert client.post("/api/v1/products").status_code == 200  # a new one


def answering_once_then_closing() -> contextlib.AbstractContextManager[str]:
    """A service that closes each connection right after its first answer, as a
    service restarted between two requests does."""

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            conn.sendall(KEPT_ALIVE_ANSWER)

    return raw_service(serve)


def test_a_connection_the_service_closed_is_never_sent_on(make_gateway):
    with answering_once_then_closing() as url:
        client = make_gateway(storage_url=url).test_client()
        for _ in range(3):  # a POST is not sent twice: each must find a live one
            assert client.post("/api/v1/products").status_code == 200
            time.sleep(0.1)  # the close has arrived


def test_head_and_no_content_answers_leave_their_connection_reusable(make_gateway):
    carried: list[int] = []

    def serve(conn: socket.socket) -> None:
        carried.append(0)
        n = len(carried) - 1
        with conn:
            while request := conn.recv(65536):
                carried[n] += 1
                if request.startswith(b"HEAD"):
                    conn.sendall(KEPT_ALIVE_ANSWER.removesuffix(b"{}"))
                else:
                    conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")

    with raw_service(serve) as url:
        client = make_gateway(storage_url=url).test_client()
        for method, status in (("HEAD", 200), ("DELETE", 204), ("HEAD", 200)):
            # Closed as a WSGI server closes an answer it has sent.
            with client.open("/api/v1/products/1", method=method) as response:
                assert response.status_code == status
        assert carried == [3]


@contextlib.contextmanager
def keep_alive_timeout(seconds: float) -> Iterator[tuple[str, list[int]]]:
    """A service that drops, unanswered, a request coming on a connection idle for
    `seconds` or more: its keep-alive timeout striking as the proxy reuses it.
    Yields its URL and how many requests each connection carried."""
    carried: list[int] = []

    def serve(conn: socket.socket) -> None:
        carried.append(0)
        n = len(carried) - 1
        with conn:
            idle_since = None
            while conn.recv(65536):
                if idle_since is not None and time.monotonic() - idle_since >= seconds:
                    return  # closed unanswered
                carried[n] += 1
                conn.sendall(KEPT_ALIVE_ANSWER)
                idle_since = time.monotonic()

    with raw_service(serve) as url:
        yield url, carried


@pytest.mark.parametrize(("idle_reuse", "second"), [(1.0, 200), (5.0, 502)])
def test_a_connection_idle_longer_than_proxy_idle_reuse_is_not_reused(
    make_gateway, idle_reuse, second
):
    with keep_alive_timeout(2.0) as (url, carried):
        gateway = make_gateway(storage_url=url, proxy_idle_reuse=idle_reuse)
        client = gateway.test_client()
        assert client.post("/api/v1/products").status_code == 200
        assert client.post("/api/v1/products").status_code == 200
        assert carried == [2]  # kept alive and reused while fresh
        time.sleep(2.5)  # idle past the service's keep-alive
        # A POST is never sent twice: reused, its connection would drop it (502).
        assert client.post("/api/v1/products").status_code == second


def test_upstream_slow_is_504_naming_the_service(make_gateway, upstream):
    client = make_gateway(storage_url=upstream, proxy_read_timeout=0.5).test_client()
    started = time.monotonic()
    response = client.get("/api/v1/products/slow?seconds=3")
    assert time.monotonic() - started < 2.5
    assert response.status_code == 504
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["service"] == "storage"


def test_internal_and_unknown_paths_are_never_routed(client, service_token):
    for path in (
        "/api/v1/internal/reservations",
        "/api/v1/internal/addresses/1f0e",
        "/api/v1/reservations",
        "/api/v1/nope",
        # dot segments, raw or encoded, would be normalised past the route table
        "/api/v1/products/../internal/reservations",
        "/api/v1/products/%2e%2e/internal/reservations",
        "/api/v1/products/..%2Finternal/reservations",
        "/api/v1/products/%2e%2e/%2e%2e/%2e%2e/metrics",
        "/api/v1/products/x/..%2F..%2F..%2F..%2Fhealth/ready",
        "/api/v1/products//../../openapi.json",
        "/api/v1/products/./x",
    ):
        response = client.get(path, headers=auth(service_token))
        assert response.status_code == 404, path
        assert response.mimetype == "application/problem+json"


def test_body_over_the_limit_is_413_at_the_edge(client):
    response = client.post(
        "/api/v1/products/echo", data=b"x" * (10 * 1024 * 1024),
        content_type="application/octet-stream",
    )  # fmt: skip
    assert response.status_code == 413
    assert response.mimetype == "application/problem+json"
