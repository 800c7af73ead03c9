"""One OpenAPI document for the whole API, and Swagger UI served with no internet."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import threading

import pytest
from werkzeug.serving import make_server

from apps.gateway import create_app
from apps.gateway.openapi import merge
from apps.gateway.proxy import route
from tests.apps.gateway.conftest import dead_url

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def test_docs_page_and_every_asset_it_references_are_served_locally(client):
    page = client.get("/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert len(assets) >= 3
    for asset in assets:
        assert asset.startswith("/"), f"{asset} is not local"
        with client.get(asset) as response:
            assert response.status_code == 200, asset
            assert response.get_data()
    script = client.get("/docs/chomik.js").get_data(as_text=True)
    assert '"/openapi.json"' in script
    assert "http" not in script


def test_openapi_merges_the_services_public_paths(client):
    document = client.get("/openapi.json").get_json()
    assert document["openapi"].startswith("3.0.")
    paths = document["paths"]
    assert "/api/v1/auth/login" in paths
    assert "/api/v1/products" in paths
    assert "/api/v1/products/echo" in paths
    assert "/api/v1/internal/reservations" not in paths
    assert "bearerAuth" in document["components"]["securitySchemes"]
    assert {"bearerAuth": []} in paths["/api/v1/auth/me"]["get"]["security"]


def test_a_service_that_is_down_is_left_out_and_back_when_it_is_up(
    make_gateway, upstream
):
    down = make_gateway(storage_url=dead_url()).test_client()
    paths = down.get("/openapi.json").get_json()["paths"]
    assert "/api/v1/auth/login" in paths
    assert not any(p.startswith("/api/v1/products") for p in paths)
    app = make_gateway(storage_url=dead_url())
    documents = app.extensions["chomik.gateway"].documents
    documents.upstreams["storage"] = upstream  # the service comes (back) up
    paths = app.test_client().get("/openapi.json").get_json()["paths"]
    assert "/api/v1/products" in paths


def test_merge_renames_clashing_components_and_keeps_shared_ones():
    own = {
        "paths": {"/api/v1/auth/me": {}},
        "components": {"schemas": {"Problem": {"type": "object"}, "Item": {"a": 1}}},
    }
    service = {
        "paths": {
            "/api/v1/products": {
                "get": {"$ref": "#/components/schemas/Item", "tags": ["products"]}
            },
            "/api/v1/internal/x": {},
        },
        "components": {"schemas": {"Problem": {"type": "object"}, "Item": {"b": 2}}},
        "tags": [{"name": "products"}],
    }
    merged = merge(own, {"storage": service}, route)
    assert set(merged["paths"]) == {"/api/v1/auth/me", "/api/v1/products"}
    assert merged["paths"]["/api/v1/products"]["get"]["$ref"] == (
        "#/components/schemas/storage.Item"
    )
    assert merged["components"]["schemas"] == {
        "Problem": {"type": "object"},
        "Item": {"a": 1},
        "storage.Item": {"b": 2},
    }
    assert merged["tags"] == [{"name": "products"}]


def test_the_merged_document_leaves_out_internal_tags_and_schemas(client, settings_for):
    from apps.delivery import create_app as create_delivery
    from apps.delivery.settings import DeliverySettings
    from apps.storage import create_app as create_storage
    from apps.storage.settings import StorageSettings

    services = {}
    for name, factory, settings in (
        ("storage", create_storage, StorageSettings),
        ("delivery", create_delivery, DeliverySettings),
    ):
        app = factory(settings_for(settings))
        services[name] = app.extensions["chomik.api"].spec.to_dict()
        app.extensions["chomik"].engine.dispose()
    own = client.application.extensions["chomik.api"].spec.to_dict()
    merged = merge(own, services, route)
    tags = {tag["name"] for tag in merged["tags"]}
    assert {"auth", "products", "addresses"} <= tags
    assert not tags & {"reservations", "address-checks"}
    schemas = set(merged["components"]["schemas"])
    assert {"Product", "AddressCreate"} <= schemas
    assert not {s for s in schemas if "Reservation" in s or "StockLine" in s}
    assert "OwnerArgs" not in schemas
    assert "BuyerAddress" not in schemas
    assert not [p for p in merged["paths"] if "/internal/" in p]


@pytest.fixture
def live_gateway(gateway_settings, upstream):
    """The gateway served over HTTP from a thread of this process."""
    app = create_app(gateway_settings(storage_url=upstream))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    app.extensions["chomik.gateway"].forwarder.close()
    app.extensions["chomik"].engine.dispose()


def test_headless_chromium_renders_the_operation_list(live_gateway):
    profile = tempfile.mkdtemp(prefix="chomik-chromium-")
    try:
        result = subprocess.run(
            [
                CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                f"--user-data-dir={profile}", "--virtual-time-budget=15000",
                "--dump-dom", f"{live_gateway}/docs",
            ],
            capture_output=True, text=True, timeout=90,
        )  # fmt: skip
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    dom = result.stdout
    assert "swagger-ui" in dom, result.stderr[-2000:]
    rendered = set(re.findall(r'data-path="([^"]+)"', dom))
    assert "/api/v1/auth/login" in rendered, result.stderr[-2000:]
    assert "/api/v1/products" in rendered
    assert 'class="btn authorize' in dom
