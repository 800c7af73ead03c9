"""Delivery's API document: the gateway publishes addresses and shipments, not the check."""

from apps.gateway.openapi import merge
from apps.gateway.proxy import route


def test_the_gateway_merges_public_paths_and_leaves_out_the_internal_one(
    client,
):
    document = client.get("/openapi.json").get_json()
    assert "/api/v1/internal/addresses/{address_id}" in document["paths"]
    merged = merge({"paths": {}}, {"delivery": document}, route)
    assert set(merged["paths"]) == {
        "/api/v1/addresses",
        "/api/v1/addresses/{address_id}",
        "/api/v1/shipments",
        "/api/v1/shipments/{shipment_id}",
    }
    assert set(merged["paths"]["/api/v1/addresses"]) == {"get", "post"}
    assert set(merged["paths"]["/api/v1/shipments/{shipment_id}"]) - {"parameters"} == {
        "get"
    }
