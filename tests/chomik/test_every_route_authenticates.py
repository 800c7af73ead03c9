"""Every protected route of every app answers 401 to a request without a token.

Even when the request's body and query are invalid too: authentication comes
before validation, so an anonymous caller learns nothing about a route's input.
"""

from __future__ import annotations

import importlib
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from werkzeug.routing import Rule

from chomik.apps import APPS, AppSpec, load
from chomik.settings import Settings
from tests.apps.gateway.conftest import FAST_HASH, private_key_file

# Routes anyone may call without a token: (app, rule, method); "*" is any.
PUBLIC: set[tuple[str, str, str]] = {
    ("*", "/health/live", "GET"),
    ("*", "/health/ready", "GET"),
    ("*", "/metrics", "GET"),
    ("*", "/openapi.json", "GET"),
    ("*", "/static/<path:filename>", "GET"),
    ("gateway", "/api/v1/auth/register", "POST"),
    ("gateway", "/api/v1/auth/login", "POST"),
    ("gateway", "/api/v1/auth/refresh", "POST"),
    ("gateway", "/api/v1/auth/jwks", "GET"),
    ("storage", "/api/v1/products", "GET"),
    ("storage", "/api/v1/products/<uuid:product_id>", "GET"),
    # The mocks play outside systems: test money and parcel tracking are open, as
    # are the test-only switches (absent in production).
    ("bank", "/api/v1/accounts", "POST"),
    ("bank", "/api/v1/accounts/<uuid:account_id>", "GET"),
    ("bank", "/api/v1/transactions/<uuid:transaction_id>/pay", "POST"),
    ("bank", "/api/v1/admin/faults", "*"),
    ("carrier", "/api/v1/tracking/<string:tracking_number>", "GET"),
    ("carrier", "/api/v1/shipments/<uuid:shipment_id>/advance", "POST"),
    ("carrier", "/api/v1/admin/faults", "*"),
}
# Whole prefixes that are public: the gateway's docs, and its proxy (the service
# behind it decides, and a bad token is refused there before it is forwarded).
PUBLIC_PREFIXES: dict[str, tuple[str, ...]] = {
    "gateway": ("/docs", "/api/v1/<path:path>"),
}
SKIPPED_METHODS = {"HEAD", "OPTIONS"}
INVALID_BODY = '["not", "an", "object"]'
INVALID_QUERY = "page=0&page_size=none&limit=-1"


def settings_class(spec: AppSpec) -> type[Settings]:
    """The app's own Settings subclass, from its package's settings module."""
    module = importlib.import_module(spec.web.partition(":")[0] + ".settings")
    (klass,) = [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, Settings)
        and value is not Settings
        and spec.name == value.APP
    ]
    return klass


@pytest.fixture
def apps(settings_for, jwt_keys) -> Iterator[dict[str, Flask]]:
    """Every app of the system, built by its factory on the test settings."""
    built: dict[str, Flask] = {}
    for spec in APPS:
        extra: dict[str, Any] = {}
        if spec.name == "gateway":
            extra = {"jwt_private_key_file": private_key_file(jwt_keys), **FAST_HASH}
        app = load(spec.web)(settings_for(settings_class(spec), **extra))
        app.testing = True
        built[spec.name] = app
    yield built
    for app in built.values():
        gateway = app.extensions.get("chomik.gateway")
        if gateway is not None:
            gateway.forwarder.close()
        app.extensions["chomik"].engine.dispose()


def is_public(app: str, rule: Rule, method: str) -> bool:
    for name, path, verb in PUBLIC:
        if name in (app, "*") and path == rule.rule and verb in (method, "*"):
            return True
    return rule.rule.startswith(PUBLIC_PREFIXES.get(app, ("\0",)))


def example_path(rule: Rule) -> str:
    """The rule with every variable filled in with a value its converter accepts."""

    def fill(match: re.Match[str]) -> str:
        converter = match.group(1) or "default"
        return str(uuid.uuid4()) if converter == "uuid" else "1"

    return re.sub(r"<(?:(\w+)(?:\([^)]*\))?:)?\w+>", fill, rule.rule)


def protected_routes(apps: dict[str, Flask]) -> list[tuple[str, str, str]]:
    routes = []
    for name, app in apps.items():
        for rule in app.url_map.iter_rules():
            for method in sorted((rule.methods or set()) - SKIPPED_METHODS):
                if not is_public(name, rule, method):
                    routes.append((name, method, example_path(rule)))
    return routes


def test_every_protected_route_refuses_an_anonymous_invalid_request_with_401(apps):
    routes = protected_routes(apps)
    assert ("storage", "POST", "/api/v1/products") in routes  # the walk sees views
    wrong = {}
    for name, method, path in routes:
        response = (
            apps[name]
            .test_client()
            .open(
                f"{path}?{INVALID_QUERY}",
                method=method,
                data=INVALID_BODY,
                content_type="application/json",
            )
        )
        if response.status_code != 401:
            wrong[f"{name} {method} {path}"] = response.status_code
    assert wrong == {}


def test_every_protected_route_refuses_a_bad_token_with_401(apps):
    wrong = {}
    for name, method, path in protected_routes(apps):
        response = (
            apps[name]
            .test_client()
            .open(
                f"{path}?{INVALID_QUERY}",
                method=method,
                data=INVALID_BODY,
                content_type="application/json",
                headers={"Authorization": "Bearer not-a-token"},
            )
        )
        if response.status_code != 401:
            wrong[f"{name} {method} {path}"] = response.status_code
    assert wrong == {}


def test_public_reads_still_refuse_a_bad_token_before_validating(apps):
    response = (
        apps["storage"]
        .test_client()
        .get(
            f"/api/v1/products?{INVALID_QUERY}",
            headers={"Authorization": "Bearer not-a-token"},
        )
    )
    assert response.status_code == 401
