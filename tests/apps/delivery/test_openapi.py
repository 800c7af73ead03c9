"""Delivery's API document: the gateway publishes the address paths, not the check."""

from apps.gateway.openapi import merge
from apps.gateway.proxy import route


def test_the_gateway_merges_public_address_paths_and_leaves_out_the_internal_one(
    client,
):
    document = client.get("/openapi.json").get_json()
    assert "/api/v1/internal/addresses/{address_id}" in document["paths"]
    merged = merge({"paths": {}}, {"delivery": document}, route)
    assert set(merged["paths"]) == {
        "/api/v1/addresses",
        "/api/v1/addresses/{address_id}",
    }
    assert set(merged["paths"]["/api/v1/addresses"]) == {"get", "post"}
