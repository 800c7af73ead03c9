"""The gateway under real gunicorn: a shared login throttle, streaming through."""

from __future__ import annotations

import gzip
import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from chomik.infra import free_port, stop_process
from tests.apps.gateway.conftest import (
    PASSWORD,
    PROJECT_DIR,
    STARTUP_TIMEOUT,
    dead_url,
    private_key_file,
)
from tests.apps.gateway.upstream import PLAIN, big_body
from tests.conftest import AUDIENCE, ISSUER, TEST_SERVICE_SECRET

pytestmark = pytest.mark.system


@pytest.fixture
def gunicorn_gateway(committed_db, jwt_keys, upstream):
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="chomik-gw-"))
    env = {
        **os.environ,
        "DATABASE_URL": committed_db.urls["gateway"],
        "JWT_PRIVATE_KEY_FILE": private_key_file(jwt_keys),
        "JWT_PUBLIC_KEY_FILE": str(jwt_keys.public_file),
        "JWT_ISSUER": ISSUER,
        "JWT_AUDIENCE": AUDIENCE,
        "SERVICE_TOKEN_SECRET": TEST_SERVICE_SECRET,
        "PASSWORD_HASH_TIME_COST": "1",
        "PASSWORD_HASH_MEMORY_KIB": "1024",
        "WEB_CONCURRENCY": "2",
        "BODY_TIMEOUT": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(workdir / "prometheus"),
        "STORAGE_URL": upstream,
        "DELIVERY_URL": dead_url(),
    }
    log = (workdir / "gateway.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "chomik.cli", "web", "gateway", "--port", str(port)],
        cwd=PROJECT_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            try:
                if requests.get(f"{base}/health/ready", timeout=3).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert process.poll() is None, (workdir / "gateway.log").read_text()
            assert time.monotonic() < deadline, "the gateway did not get ready"
            time.sleep(0.2)
        yield base, workdir / "gateway.log"
    finally:
        stop_process(process)
        log.close()


def test_sixth_wrong_login_is_429_across_two_gunicorn_workers(
    gunicorn_gateway, committed_db
):
    base, log = gunicorn_gateway
    registered = requests.post(
        f"{base}/api/v1/auth/register",
        json={
            "email": "g@example.com",
            "password": PASSWORD,
            "name": "G",
            "role": "buyer",
        },
        timeout=10,
    )
    assert registered.status_code == 201

    def wrong(_n):
        # A new connection each time, so the kernel spreads them over both workers.
        return requests.post(
            f"{base}/api/v1/auth/login",
            json={"email": "g@example.com", "password": "wrong-password"},
            headers={"Connection": "close"},
            timeout=10,
        ).status_code

    with ThreadPoolExecutor(5) as pool:
        assert list(pool.map(wrong, range(5))) == [401] * 5
    sixth = requests.post(
        f"{base}/api/v1/auth/login",
        json={"email": "g@example.com", "password": PASSWORD},
        timeout=10,
    )
    assert sixth.status_code == 429
    assert sixth.headers["Content-Type"] == "application/problem+json"
    assert 0 < int(sixth.headers["Retry-After"]) <= 60
    assert log.read_text().count("Booting worker") == 2
    # One shared count in the database, not one per worker process: the five
    # failures, per (account, address) over a minute and over the account's window,
    # and per account; the refusal is no failure.
    with committed_db.engine("gateway").connect() as conn:
        counts = (
            conn.execute(
                sa.text(
                    "SELECT count FROM rate_limits WHERE key LIKE '%account:%' "
                    "ORDER BY key"
                )
            )
            .scalars()
            .all()
        )
    assert counts == [5, 5, 5]


def test_proxy_under_gunicorn_streams_large_and_gzip_bodies_intact(gunicorn_gateway):
    base, _log = gunicorn_gateway
    big = requests.get(
        f"{base}/api/v1/products/big?mb=32",
        headers={"X-Request-Id": "big-1"},
        stream=True,
        timeout=30,
    )
    digest, size = hashlib.sha256(), 0
    for chunk in big.iter_content(256 * 1024):
        digest.update(chunk)
        size += len(chunk)
    assert big.status_code == 200
    assert big.headers["X-Request-Id"] == "big-1"
    assert big.raw.headers.getlist("Date") == [big.headers["Date"]]
    assert big.headers["Server"].startswith("gunicorn")
    assert size == 32 * 1024 * 1024
    assert digest.digest() == hashlib.sha256(big_body(32)).digest()

    zipped = requests.get(
        f"{base}/api/v1/products/gzip",
        headers={"Accept-Encoding": "gzip"},
        stream=True,
        timeout=10,
    )
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(zipped.raw.read(decode_content=False)) == PLAIN

    down = requests.get(f"{base}/api/v1/addresses", timeout=10)
    assert down.status_code == 502
    assert down.json()["service"] == "delivery"


def raw_exchange(
    base: str, head: str, body: bytes, *, half_close: bool = True
) -> tuple[int, str, bytes]:
    """Send a request as bytes, half-close (or just stop sending), and read the
    answer to the end."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        if half_close:
            sock.shutdown(socket.SHUT_WR)  # the client sends nothing more
        answer = b""
        while data := sock.recv(65536):
            answer += data
    lines, _, rest = answer.partition(b"\r\n\r\n")
    status = int(lines.split()[1])
    kind = next(
        (line.split(b":", 1)[1].strip().decode() for line in lines.split(b"\r\n")
         if line.lower().startswith(b"content-type:")),
        "",
    )  # fmt: skip
    return status, kind, rest


def test_gunicorn_bodies_cut_short_or_badly_chunked_are_400_and_register_nobody(
    gunicorn_gateway, committed_db
):
    base, _log = gunicorn_gateway
    account = (
        b'{"email": "short@example.com", "password": "' + PASSWORD.encode()
        + b'", "name": "S", "role": "buyer"}'
    )  # fmt: skip
    declared = len(account) + 50
    # The gateway's own route, and through the proxy: refused at once there, not a
    # 504 after the service's wait.
    for path in ("/api/v1/auth/register", "/api/v1/products/echo"):
        status, kind, body = raw_exchange(
            base,
            f"POST {path} HTTP/1.1\nHost: x\nConnection: close\n"
            f"Content-Type: application/json\nContent-Length: {declared}\n",
            account,
        )
        assert (status, kind) == (400, "application/problem+json"), (path, body)
    with committed_db.engine("gateway").connect() as conn:
        stored = conn.execute(
            sa.text("SELECT count(*) FROM users WHERE email = 'short@example.com'")
        ).scalar()
    assert stored == 0
    for path in ("/api/v1/auth/login", "/api/v1/products/echo", "/health/live"):
        for chunked in (b"zz\r\nabc\r\n0\r\n\r\n", b"3\r\nabcXY", b"-2\r\nab\r\n"):
            status, kind, body = raw_exchange(
                base,
                f"POST {path} HTTP/1.1\nHost: x\nConnection: close\n"
                "Content-Type: application/json\nTransfer-Encoding: chunked\n",
                chunked,
            )
            assert status == 400, (path, chunked, body)


def test_a_body_that_stops_arriving_is_a_400_after_body_timeout(gunicorn_gateway):
    # A client that sends part of a body and then nothing would hold one of the
    # gateway's few threads for good (gunicorn waits for a body forever); a dozen
    # such connections stalled every other request.
    base, _log = gunicorn_gateway
    for path in ("/api/v1/auth/login", "/api/v1/products/echo"):
        started = time.monotonic()
        status, kind, body = raw_exchange(
            base,
            f"POST {path} HTTP/1.1\nHost: x\nConnection: close\n"
            "Content-Type: application/json\nContent-Length: 50\n",
            b"{",
            half_close=False,
        )
        assert (status, kind) == (400, "application/problem+json"), (path, body)
        assert time.monotonic() - started >= 2  # BODY_TIMEOUT, not an early refusal
