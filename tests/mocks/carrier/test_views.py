"""The carrier mock over HTTP: shipments, idempotency, statuses, faults."""

import uuid

import pytest
import sqlalchemy as sa

from mocks.carrier import create_app
from tests.conftest import auth
from tests.mocks.carrier.conftest import (
    ADDRESS,
    CALLBACK_URL,
    OTHER_TOKEN,
    new_shipment,
)


def callbacks(session):
    return session.execute(
        sa.text("SELECT key, url, body FROM outgoing_callbacks ORDER BY id")
    ).all()


def advance(client, shipment_id):
    return client.post(f"/api/v1/shipments/{shipment_id}/advance")


def test_a_shipment_is_registered_with_a_tracking_number(client, merchant):
    response = new_shipment(client, merchant, reference="order-1")
    assert response.status_code == 201
    body = response.json
    assert body["status"] == "CREATED"
    assert body["reference"] == "order-1"
    assert body["tracking_number"].startswith("CH")
    assert body["tracking_url"] == (
        f"http://carrier.test/api/v1/tracking/{body['tracking_number']}"
    )
    assert body["address"] == ADDRESS
    tracked = client.get(body["tracking_url"].removeprefix("http://carrier.test"))
    assert tracked.json["status"] == "CREATED"


def test_the_same_reference_again_answers_the_same_shipment(client, merchant):
    first = new_shipment(client, merchant, reference="order-2")
    again = new_shipment(client, merchant, reference="order-2", city="Elsewhere")
    assert again.status_code == 200
    assert again.json == first.json


def test_references_are_per_merchant(client, merchant):
    mine = new_shipment(client, merchant, reference="shared")
    theirs = new_shipment(client, auth(OTHER_TOKEN), reference="shared")
    assert theirs.status_code == 201
    assert theirs.json["id"] != mine.json["id"]


@pytest.mark.parametrize("country", ["US", "us", "JP"])
def test_an_unserved_country_is_refused(client, merchant, country):
    response = new_shipment(client, merchant, country=country)
    assert response.status_code == 422
    assert response.json["type"] == "country-not-served"
    assert response.json["country"] == country.upper()


def test_a_lowercase_served_country_is_accepted(client, merchant):
    assert new_shipment(client, merchant, country="de").status_code == 201


@pytest.mark.parametrize(
    "body",
    [{"address": ADDRESS}, {"reference": "", "address": ADDRESS},
     {"reference": "r", "address": {"city": "x"}},
     {"reference": "r", "address": {**ADDRESS, "country": "POL"}},
     {"reference": "r", "address": "PL"}],
)  # fmt: skip
def test_a_bad_shipment_is_refused(client, merchant, body):
    response = client.post("/api/v1/shipments", json=body, headers=merchant)
    assert response.status_code == 422
    assert response.json["type"] == "validation-error"


@pytest.mark.parametrize("headers", [{}, auth("nope")])
def test_shipments_need_a_merchant_token(client, headers):
    assert new_shipment(client, headers).status_code == 401
    response = client.get("/api/v1/shipments?reference=x", headers=headers)
    assert response.status_code == 401
    assert response.json["type"] == "unknown-merchant"


def test_a_shipment_is_found_by_reference_and_id_by_its_merchant_only(client, merchant):
    created = new_shipment(client, merchant, reference="find-me").json
    found = client.get("/api/v1/shipments?reference=find-me", headers=merchant)
    assert found.json == created
    by_id = client.get(f"/api/v1/shipments/{created['id']}", headers=merchant)
    assert by_id.json == created
    other = auth(OTHER_TOKEN)
    assert (
        client.get(f"/api/v1/shipments/{created['id']}", headers=other).status_code
        == 404
    )
    missing = client.get("/api/v1/shipments?reference=find-me", headers=other)
    assert missing.json["type"] == "shipment-not-found"


def test_advancing_moves_created_to_in_transit_to_delivered_with_callbacks(
    client, merchant, session
):
    shipment = new_shipment(client, merchant, reference="order-9").json
    assert advance(client, shipment["id"]).json["status"] == "IN_TRANSIT"
    assert advance(client, shipment["id"]).json["status"] == "DELIVERED"
    refused = advance(client, shipment["id"])
    assert refused.status_code == 409
    assert refused.json["type"] == "illegal-transition"
    queued = callbacks(session)
    assert [c.body["status"] for c in queued] == ["IN_TRANSIT", "DELIVERED"]
    assert {c.url for c in queued} == {CALLBACK_URL}
    assert {c.key for c in queued} == {shipment["id"]}
    first = queued[0].body
    assert set(first) == {
        "event_id",
        "shipment_id",
        "reference",
        "status",
        "occurred_at",
    }
    assert first["shipment_id"] == shipment["id"]
    assert first["reference"] == "order-9"
    assert queued[0].body["event_id"] != queued[1].body["event_id"]


def test_advancing_an_unknown_shipment_is_not_found(client):
    assert advance(client, uuid.uuid4()).status_code == 404


def test_the_unavailable_switch_answers_503_until_it_ends(client, merchant):
    client.put("/api/v1/admin/faults", json={"unavailable_for": 60})
    response = new_shipment(client, merchant, reference="while-down")
    assert response.status_code == 503
    assert response.json["type"] == "carrier-unavailable"
    assert "Retry-After" in response.headers
    client.delete("/api/v1/admin/faults")
    assert new_shipment(client, merchant, reference="while-down").status_code == 201


def test_the_test_endpoints_do_not_exist_in_production(dbs, carrier_settings, merchant):
    settings = carrier_settings.replace(
        environment="production",
        service_token_secret="a-real-production-service-secret-0123456789",
    )
    client = dbs.bind_app(create_app(settings), "carrier").test_client()
    shipment = new_shipment(client, merchant).json
    assert advance(client, shipment["id"]).status_code == 404
    assert client.get("/api/v1/admin/faults").status_code == 404
