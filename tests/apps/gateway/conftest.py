"""Gateway fixtures: the app on the test databases, a real upstream process, actors."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from apps.gateway import create_app
from apps.gateway.revocations import Revocations
from apps.gateway.settings import GatewaySettings
from chomik.infra import free_port, stop_process, wait_for_port
from tests.conftest import AUDIENCE, ISSUER, TEST_SERVICE_SECRET

PROJECT_DIR = Path(__file__).resolve().parents[3]
PASSWORD = "correct horse battery"
FAST_HASH = {"password_hash_time_cost": 1, "password_hash_memory_kib": 1024}
# Seconds a process started by a test may take to answer. Generous: on a slow
# 2-core machine, beside another test starting a whole system, a gunicorn with two
# workers took over 30 s; a process that never answers still fails, only later.
STARTUP_TIMEOUT = 120


def private_key_file(jwt_keys) -> str:
    return str(jwt_keys.public_file.parent / "jwt-private.pem")


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def gateway_settings(settings_for, jwt_keys) -> Callable[..., GatewaySettings]:
    """Gateway settings on the test infrastructure; services down unless given."""

    def build(**overrides: Any) -> GatewaySettings:
        values: dict[str, Any] = {
            "jwt_private_key_file": private_key_file(jwt_keys),
            "storage_url": dead_url(),
            "delivery_url": dead_url(),
            "orders_url": dead_url(),
            "payment_url": dead_url(),
            "openapi_cache_ttl": 0.0,
            **FAST_HASH,
        }
        values.update(overrides)
        return settings_for(GatewaySettings, **values)

    return build


def reset_rate_limits(infra) -> None:
    with infra.engine("gateway").begin() as conn:
        conn.execute(sa.text("DELETE FROM rate_limits"))


@pytest.fixture
def make_gateway(gateway_settings, dbs, infra) -> Iterator[Callable[..., Any]]:
    """Build gateway apps inside this test's savepoint on chomik_gateway."""
    apps = []

    def build(**overrides: Any):
        app = create_app(gateway_settings(**overrides))
        app.testing = True
        dbs.bind_app(app, "gateway")
        # The deny-list is read inside the test's transaction too, which never
        # commits, so nothing is notified: every check asks.
        state = app.extensions["chomik.gateway"]
        app.extensions["chomik.gateway"] = dataclasses.replace(
            state,
            revocations=Revocations(
                state.revocations.engine,
                keep_sessions=state.revocations.keep_sessions,
                listen=False,
                connect=lambda: contextlib.nullcontext(dbs.connection("gateway")),
            ),
        )
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions["chomik.gateway"].forwarder.close()
        app.extensions["chomik"].engine.dispose()
    reset_rate_limits(infra)


def serve(target: str, infra, jwt_keys, database: str) -> Iterator[str]:
    """Run an app factory in its own process on a free port; yield its base URL."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": infra.urls[database],
        "JWT_PUBLIC_KEY_FILE": str(jwt_keys.public_file),
        "JWT_ISSUER": ISSUER,
        "JWT_AUDIENCE": AUDIENCE,
        "SERVICE_TOKEN_SECRET": TEST_SERVICE_SECRET,
        "LOG_LEVEL": "WARNING",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.apps.gateway.serve", target, str(port)],
        cwd=PROJECT_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        assert wait_for_port(port, timeout=STARTUP_TIMEOUT), f"{target} did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(process)


@pytest.fixture(scope="session")
def upstream(infra, jwt_keys) -> Iterator[str]:
    """A real service process owning /products (see upstream.py)."""
    yield from serve("tests.apps.gateway.upstream:build", infra, jwt_keys, "storage")


@pytest.fixture(scope="session")
def storage_service(infra, jwt_keys) -> Iterator[str]:
    """The real storage service in its own process."""
    yield from serve("apps.storage:create_app", infra, jwt_keys, "storage")


@pytest.fixture
def app(make_gateway, upstream):
    """The gateway with storage pointing at the test upstream."""
    return make_gateway(storage_url=upstream)


@pytest.fixture
def client(app):
    return app.test_client()


class Actors:
    """Register and log in people through the gateway's HTTP API."""

    def __init__(self, client) -> None:
        self.client = client

    def register(self, email: str, role: str = "buyer", password: str = PASSWORD):
        response = self.client.post(
            "/api/v1/auth/register",
            json={"email": email, "password": password, "name": "Test", "role": role},
        )
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    def login(self, email: str, password: str = PASSWORD) -> dict[str, Any]:
        response = self.client.post(
            "/api/v1/auth/login", json={"email": email, "password": password}
        )
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    def token(self, email: str, role: str = "buyer") -> str:
        self.register(email, role)
        return self.login(email)["access_token"]


@pytest.fixture
def actors(client) -> Actors:
    return Actors(client)
