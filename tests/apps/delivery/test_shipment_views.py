"""GET /shipments and /shipments/{id}: the buyer's own, every one for an admin."""

import datetime as dt
import uuid

import pytest

from apps.delivery.models import ShipmentStatus
from tests.factories.delivery import ShipmentEventFactory, ShipmentFactory

S = ShipmentStatus
T0 = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def shipment(as_buyer):
    shipment = ShipmentFactory(buyer_id=as_buyer.id, status=S.IN_TRANSIT)
    ShipmentEventFactory(shipment_id=shipment.id, status=S.CREATED, at=T0)
    ShipmentEventFactory(
        shipment_id=shipment.id, status=S.IN_TRANSIT, at=T0 + dt.timedelta(hours=1)
    )
    return shipment


def test_the_buyer_sees_the_shipment_with_its_history(client, as_buyer, shipment):
    answer = client.get(f"/api/v1/shipments/{shipment.id}", headers=as_buyer.headers)
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["id"] == str(shipment.id)
    assert body["order_id"] == str(shipment.order_id)
    assert body["status"] == "IN_TRANSIT"
    assert body["tracking_number"] == shipment.tracking_number
    assert body["tracking_url"] == shipment.tracking_url
    assert body["events"] == [
        {"status": "CREATED", "at": "2026-11-29T12:00:00+00:00"},
        {"status": "IN_TRANSIT", "at": "2026-11-29T13:00:00+00:00"},
    ]


def test_an_admin_sees_any_shipment(client, as_admin, shipment):
    answer = client.get(f"/api/v1/shipments/{shipment.id}", headers=as_admin.headers)
    assert answer.status_code == 200
    assert answer.get_json()["id"] == str(shipment.id)


@pytest.mark.parametrize("actor", ["as_other_buyer", "as_seller"])
def test_someone_elses_shipment_is_not_found(client, request, actor, shipment):
    headers = request.getfixturevalue(actor).headers
    answer = client.get(f"/api/v1/shipments/{shipment.id}", headers=headers)
    assert answer.status_code == 404
    assert answer.get_json()["type"].endswith("shipment-not-found")


def test_an_unknown_shipment_is_not_found(client, as_admin):
    answer = client.get(f"/api/v1/shipments/{uuid.uuid4()}", headers=as_admin.headers)
    assert answer.status_code == 404


def test_shipments_need_a_token(client, shipment):
    assert client.get(f"/api/v1/shipments/{shipment.id}").status_code == 401
    assert client.get("/api/v1/shipments").status_code == 401


def test_the_list_by_order_answers_the_buyers_shipment_only(
    client, as_buyer, as_other_buyer, shipment
):
    ShipmentFactory(buyer_id=as_buyer.id)  # another order of the same buyer
    query = f"/api/v1/shipments?order_id={shipment.order_id}"
    mine = client.get(query, headers=as_buyer.headers).get_json()
    assert [s["id"] for s in mine["items"]] == [str(shipment.id)]
    assert (mine["page"], mine["page_size"], mine["total"]) == (1, 20, 1)
    assert len(mine["items"][0]["events"]) == 2
    theirs = client.get(query, headers=as_other_buyer.headers).get_json()
    assert (theirs["items"], theirs["total"]) == ([], 0)


def test_the_list_shows_a_buyer_their_own_and_an_admin_every_one(
    client, as_buyer, as_admin, shipment
):
    other = ShipmentFactory()
    mine = client.get("/api/v1/shipments", headers=as_buyer.headers).get_json()
    assert {s["id"] for s in mine["items"]} == {str(shipment.id)}
    every = client.get(
        "/api/v1/shipments?page_size=100", headers=as_admin.headers
    ).get_json()
    assert {str(shipment.id), str(other.id)} <= {s["id"] for s in every["items"]}


@pytest.mark.parametrize(
    "query", ["order_id=not-a-uuid", "page=0", "page_size=101"], ids=str
)
def test_a_bad_filter_is_422(client, as_buyer, query):
    answer = client.get(f"/api/v1/shipments?{query}", headers=as_buyer.headers)
    assert answer.status_code == 422
