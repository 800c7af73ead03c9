"""HTTP as clients and caches expect it: 405 with Allow, no Host-built redirects,
security headers, tokens never cached, a bounded set of metrics labels."""

from __future__ import annotations

import pytest

from apps.gateway.settings import GatewaySettings
from chomik.settings import SettingsError
from chomik.web import SECURITY_HEADERS
from tests.apps.gateway.conftest import PASSWORD


def test_another_method_on_a_gateway_path_is_405_with_allow(client):
    response = client.get("/api/v1/auth/login")
    assert response.status_code == 405
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["type"] == "method-not-allowed"
    assert "POST" in response.headers["Allow"]
    assert "GET" not in response.headers["Allow"]


def test_an_unknown_path_below_a_gateway_prefix_is_still_404(client):
    response = client.get("/api/v1/auth/nothing-here")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"


@pytest.mark.parametrize(
    "path", ["/api/v1//products", "/api/v1/auth//login", "/api/v1/auth/jwks/"]
)
def test_no_redirect_is_built_from_a_forged_host(client, path):
    response = client.get(path, headers={"Host": "evil.example"})
    assert not 300 <= response.status_code < 400
    assert "Location" not in response.headers
    assert response.mimetype in ("application/json", "application/problem+json")


def test_a_doubled_slash_is_a_plain_404(client):
    response = client.get("/api/v1//products", headers={"Host": "evil.example"})
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/auth/jwks"),
        ("GET", "/api/v1/auth/me"),
        ("POST", "/api/v1/auth/login"),
        ("GET", "/api/v1/auth/login"),
        ("GET", "/api/v1/nowhere"),
        ("GET", "/api/v1/products"),
        ("GET", "/health/live"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("BREW", "/api/v1/products"),
    ],
)
def test_every_answer_carries_the_security_headers(client, method, path):
    response = client.open(path, method=method, json={})
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (name, response.status_code)


def test_the_docs_page_has_a_policy_that_lets_swagger_ui_run_locally(client):
    response = client.get("/docs")
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "connect-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_token_answers_are_never_stored(client, actors):
    actors.register("cache@example.com")
    login = client.post(
        "/api/v1/auth/login", json={"email": "cache@example.com", "password": PASSWORD}
    )
    assert login.status_code == 200
    assert login.headers["Cache-Control"] == "no-store"
    refreshed = client.post(
        "/api/v1/auth/refresh",
        json={"refresh_token": login.get_json()["refresh_token"]},
    )
    assert refreshed.status_code == 200
    assert refreshed.headers["Cache-Control"] == "no-store"


def test_invented_methods_share_one_metrics_label(client):
    for method in ("BREW", "WHEN", "XYZZY"):
        client.open("/api/v1/products", method=method)
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'method="other"' in metrics
    for method in ("BREW", "WHEN", "XYZZY"):
        assert f'method="{method}"' not in metrics


def test_the_public_port_serves_no_metrics_when_a_metrics_port_is_set(make_gateway):
    # What production requires of the gateway: /metrics only on METRICS_PORT.
    client = make_gateway(metrics_port=9100).test_client()
    response = client.get("/metrics")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert client.get("/health/live").status_code == 200


def test_without_a_metrics_port_the_app_serves_its_metrics(make_gateway):
    response = make_gateway().test_client().get("/metrics")
    assert response.status_code == 200
    assert b"flask_http_request" in response.data


def test_production_gateway_refuses_to_start_without_a_metrics_port():
    real = {
        "ENVIRONMENT": "production",
        "SERVICE_TOKEN_SECRET": "a-real-secret-of-the-deployment-0123456789",
        "BANK_CALLBACK_SECRETS": "a-real-bank-secret-0123456789",
        "CARRIER_CALLBACK_SECRETS": "a-real-carrier-secret-0123456789",
        "DATABASE_URL": "postgresql+psycopg2://chomik@db.example/chomik_gateway",
    }
    with pytest.raises(SettingsError, match="METRICS_PORT"):
        GatewaySettings.from_env(real)
    assert GatewaySettings.from_env({**real, "METRICS_PORT": "9100"}).metrics_port
