"""Who may do what through the gateway; admins come from the command line only."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from apps.gateway import create_app
from tests.apps.gateway.conftest import PASSWORD, PROJECT_DIR, Actors, reset_rate_limits
from tests.conftest import auth

PRODUCT = {
    "title": "Air Max 90",
    "brand": "Nike",
    "model": "Air Max 90",
    "size": "42",
    "color": "white",
    "condition": "new",
    "price": "129.90",
    "currency": "RUB",
    "quantity": 3,
}


def create_admin(infra, email, password=PASSWORD, *extra):
    env = {
        **os.environ,
        "DATABASE_URL": infra.urls["gateway"],
        "PASSWORD_HASH_TIME_COST": "1",
        "PASSWORD_HASH_MEMORY_KIB": "1024",
    }
    return subprocess.run(
        [sys.executable, "-m", "chomik.cli", "create-admin", email, *extra],
        input=f"{password}\n", capture_output=True, text=True, env=env,
        cwd=PROJECT_DIR, timeout=60,
    )  # fmt: skip


@pytest.fixture(params=["storage", "upstream"])
def committed_client(request, committed_db, gateway_settings):
    """A gateway that sees what other processes commit (the CLI's admin).

    Behind it: the real storage service, and the test upstream.
    """
    service = request.getfixturevalue(
        "storage_service" if request.param == "storage" else "upstream"
    )
    app = create_app(gateway_settings(storage_url=service))
    yield app.test_client()
    app.extensions["chomik.gateway"].forwarder.close()
    app.extensions["chomik"].engine.dispose()
    reset_rate_limits(committed_db)


def test_role_matrix_for_creating_a_product(committed_client, committed_db):
    people = Actors(committed_client)
    buyer = people.token("buyer@example.com", "buyer")
    seller = people.token("seller@example.com", "seller")
    made = create_admin(committed_db, "Boss@Example.com", PASSWORD, "--name", "Boss")
    assert made.returncode == 0, made.stderr
    admin = people.login("boss@example.com")["access_token"]

    refused = committed_client.post(
        "/api/v1/products", json=PRODUCT, headers=auth(buyer)
    )
    assert refused.status_code == 403
    assert refused.mimetype == "application/problem+json"
    assert refused.get_json()["type"] == "forbidden"
    for token, email in ((seller, "seller@example.com"), (admin, "boss@example.com")):
        created = committed_client.post(
            "/api/v1/products", json=PRODUCT, headers=auth(token)
        )
        assert created.status_code == 201, created.get_data(as_text=True)
        me = committed_client.get("/api/v1/auth/me", headers=auth(token)).get_json()
        assert me["email"] == email
        assert created.get_json()["seller_id"] == me["id"]
    me = committed_client.get("/api/v1/auth/me", headers=auth(admin)).get_json()
    assert me["roles"] == ["admin"]
    assert me["name"] == "Boss"


def test_create_admin_refuses_a_taken_email_and_a_weak_password(committed_db):
    assert create_admin(committed_db, "dup@example.com").returncode == 0
    again = create_admin(committed_db, "DUP@example.com")
    assert again.returncode == 1
    assert "already registered" in again.stderr
    weak = create_admin(committed_db, "weak@example.com", "short")
    assert weak.returncode == 1


def test_the_api_never_makes_an_admin(client):
    response = client.post(
        "/api/v1/auth/register",
        json={
            "email": "x@example.com",
            "password": PASSWORD,
            "name": "X",
            "role": "admin",
        },
    )
    assert response.status_code == 422
