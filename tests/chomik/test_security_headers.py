"""Every app's every answer carries the security headers, errors included."""

from __future__ import annotations

from chomik.web import SECURITY_HEADERS
from tests.chomik.test_every_route_authenticates import (  # noqa: F401 - a fixture
    apps,
)


def test_every_app_sends_the_security_headers_on_success_and_error(
    apps,  # noqa: F811
):
    missing = {}
    for name, app in apps.items():
        client = app.test_client()
        for method, path in (
            ("GET", "/health/live"),
            ("GET", "/no/such/path"),
            ("BREW", "/health/live"),
        ):
            response = client.open(path, method=method)
            absent = [
                h for h, v in SECURITY_HEADERS.items() if response.headers.get(h) != v
            ]
            if absent:
                missing[f"{name} {method} {path}"] = absent
    assert missing == {}
