"""Addresses over HTTP: create, list, delete; validation, roles, ownership."""

import uuid
from decimal import Decimal

import pytest
import sqlalchemy as sa

from apps.delivery import create_app
from apps.delivery.consumers import free_address, hold_address
from apps.delivery.models import Address
from apps.delivery.settings import DeliverySettings
from clients.events import (
    OrderCancelled,
    OrderDelivered,
    OrderExpired,
    OrderItem,
    OrderPlaced,
)
from tests.factories.delivery import AddressFactory

BODY = {
    "recipient": "Anna Petrova",
    "phone": "+79161234567",
    "country": "RU",
    "city": "Moscow",
    "street": "Tverskaya 7, apt. 12",
    "postal_code": "125009",
}


def address_count(session):
    return session.scalar(sa.select(sa.func.count()).select_from(Address))


def test_buyer_adds_an_address_and_sees_it_listed(client, as_buyer, session):
    created = client.post("/api/v1/addresses", json=BODY, headers=as_buyer.headers)
    assert created.status_code == 201, created.json
    address = created.json
    assert set(address) == {"id", *BODY, "created_at"}
    assert {k: address[k] for k in BODY} == BODY
    stored = session.get(Address, uuid.UUID(address["id"]))
    assert stored.buyer_id == as_buyer.id

    listed = client.get("/api/v1/addresses", headers=as_buyer.headers)
    assert listed.status_code == 200
    assert listed.json == {"items": [address], "page": 1, "page_size": 20, "total": 1}


def test_fields_are_trimmed_and_the_country_upper_cased(client, as_buyer):
    body = {k: f"  {v}\u00a0" for k, v in BODY.items()} | {"country": " ru "}
    created = client.post("/api/v1/addresses", json=body, headers=as_buyer.headers)
    assert created.status_code == 201, created.json
    assert {k: created.json[k] for k in BODY} == BODY


def test_letters_of_any_script_are_accepted(client, as_buyer):
    body = {**BODY, "recipient": "Анна Петрова", "street": "ул. Тверская, 7"}
    created = client.post("/api/v1/addresses", json=body, headers=as_buyer.headers)
    assert created.status_code == 201, created.json
    assert created.json["recipient"] == "Анна Петрова"


def test_longest_fields_and_phones_are_accepted(client, as_buyer):
    body = {
        **BODY,
        "recipient": "r" * 100,
        "city": "c" * 100,
        "street": "s" * 200,
        "postal_code": "p" * 20,
        "phone": "+" + "9" * 15,
    }
    created = client.post("/api/v1/addresses", json=body, headers=as_buyer.headers)
    assert created.status_code == 201, created.json
    short = {**BODY, "phone": "+12345678"}
    created = client.post("/api/v1/addresses", json=short, headers=as_buyer.headers)
    assert created.status_code == 201, created.json


BAD_FIELDS = [
    *[(field, None) for field in BODY],
    *[(field, "") for field in BODY],
    *[(field, "   ") for field in BODY],
    *[(field, 42) for field in BODY],
    *[(field, "a\u0007b") for field in BODY if field not in ("phone", "country")],
    ("recipient", "r" * 101),
    ("recipient", "Anna\nPetrova"),
    ("recipient", "Anna\u202ePetrova"),
    ("recipient", "Anna\u200bPetrova"),
    ("street", "Tverskaya\u200e 7"),
    ("city", "c" * 101),
    ("city", "Mos\tcow"),
    ("street", "s" * 201),
    ("street", "Tverskaya\u2028 7"),
    ("postal_code", "p" * 21),
    ("postal_code", "125\x7f009"),
    ("phone", "79161234567"),
    ("phone", "+09161234567"),
    ("phone", "+1234567"),
    ("phone", "+1234567890123456"),
    ("phone", "+7 916 123 45 67"),
    ("phone", "+7(916)1234567"),
    ("phone", "+7916123456a"),
    ("phone", "+７９１６１２３４５６７"),
    ("country", "XX"),
    ("country", "RUS"),
    ("country", "R"),
    ("country", "UK"),
    ("country", "R1"),
]


@pytest.mark.parametrize(("field", "value"), BAD_FIELDS)
def test_each_bad_field_is_refused_with_its_name(
    client, as_buyer, session, field, value
):
    body = {**BODY, field: value}
    response = client.post("/api/v1/addresses", json=body, headers=as_buyer.headers)
    assert response.status_code == 422, response.json
    assert response.content_type == "application/problem+json"
    assert response.json["type"] == "validation-error"
    assert list(response.json["errors"]) == [field]
    assert address_count(session) == 0


@pytest.mark.parametrize("field", list(BODY))
def test_each_missing_field_is_refused(client, as_buyer, field):
    body = {k: v for k, v in BODY.items() if k != field}
    response = client.post("/api/v1/addresses", json=body, headers=as_buyer.headers)
    assert response.status_code == 422
    assert list(response.json["errors"]) == [field]


def test_unknown_fields_are_refused(client, as_buyer):
    body = {**BODY, "buyer_id": str(uuid.uuid4())}
    response = client.post("/api/v1/addresses", json=body, headers=as_buyer.headers)
    assert response.status_code == 422
    assert list(response.json["errors"]) == ["buyer_id"]


def test_a_country_the_carrier_does_not_serve_is_refused(client, as_buyer, session):
    body = {**BODY, "country": "US"}
    response = client.post("/api/v1/addresses", json=body, headers=as_buyer.headers)
    assert response.status_code == 422
    assert response.content_type == "application/problem+json"
    assert response.json["type"] == "country-not-served"
    assert response.json["country"] == "US"
    assert list(response.json["errors"]) == ["country"]
    assert address_count(session) == 0


def test_the_served_countries_come_from_the_settings(dbs, settings_for, as_buyer):
    settings = settings_for(DeliverySettings, carrier_countries="us, ca")
    client = dbs.bind_app(create_app(settings), "delivery").test_client()
    us = client.post(
        "/api/v1/addresses", json={**BODY, "country": "US"}, headers=as_buyer.headers
    )
    assert us.status_code == 201, us.json
    ru = client.post("/api/v1/addresses", json=BODY, headers=as_buyer.headers)
    assert ru.json["type"] == "country-not-served"


def test_anonymous_callers_are_refused(client, session):
    assert client.post("/api/v1/addresses", json=BODY).status_code == 401
    assert client.get("/api/v1/addresses").status_code == 401
    address = AddressFactory()
    assert client.delete(f"/api/v1/addresses/{address.id}").status_code == 401
    assert session.get(Address, address.id).deleted_at is None


@pytest.mark.parametrize("actor", ["as_seller", "as_admin"])
def test_only_buyers_have_addresses(client, session, request, actor):
    headers = request.getfixturevalue(actor).headers
    response = client.post("/api/v1/addresses", json=BODY, headers=headers)
    assert response.status_code == 403
    assert response.json["type"] == "forbidden"
    assert client.get("/api/v1/addresses", headers=headers).status_code == 403
    address = AddressFactory()
    deleted = client.delete(f"/api/v1/addresses/{address.id}", headers=headers)
    assert deleted.status_code == 403
    assert address_count(session) == 1


def test_a_service_token_is_no_buyer(client, as_service):
    response = client.post("/api/v1/addresses", json=BODY, headers=as_service)
    assert response.status_code == 401


def test_the_list_shows_only_your_addresses_newest_first(
    client, as_buyer, as_other_buyer
):
    first = client.post("/api/v1/addresses", json=BODY, headers=as_buyer.headers)
    second = client.post(
        "/api/v1/addresses", json={**BODY, "city": "Kazan"}, headers=as_buyer.headers
    )
    client.post("/api/v1/addresses", json=BODY, headers=as_other_buyer.headers)
    listed = client.get("/api/v1/addresses", headers=as_buyer.headers).json
    assert [a["id"] for a in listed["items"]] == [second.json["id"], first.json["id"]]
    assert listed["total"] == 2
    other = client.get("/api/v1/addresses", headers=as_other_buyer.headers).json
    assert other["total"] == 1
    assert first.json["id"] not in {a["id"] for a in other["items"]}


def test_the_list_is_paginated(client, as_buyer):
    for _ in range(5):
        AddressFactory(buyer_id=as_buyer.id)
    seen = []
    for page in (1, 2, 3):
        body = client.get(
            f"/api/v1/addresses?page={page}&page_size=2", headers=as_buyer.headers
        ).json
        assert (body["page"], body["page_size"], body["total"]) == (page, 2, 5)
        seen += [a["id"] for a in body["items"]]
    assert len(seen) == len(set(seen)) == 5
    beyond = client.get(
        "/api/v1/addresses?page=4&page_size=2", headers=as_buyer.headers
    )
    assert beyond.json["items"] == []


@pytest.mark.parametrize("query", ["page=0", "page=x", "page_size=0", "page_size=101"])
def test_a_bad_page_is_refused(client, as_buyer, query):
    response = client.get(f"/api/v1/addresses?{query}", headers=as_buyer.headers)
    assert response.status_code == 422
    assert response.json["type"] == "validation-error"


def test_delete_hides_the_address_but_keeps_the_row(client, as_buyer, session):
    kept = AddressFactory(buyer_id=as_buyer.id)
    gone = AddressFactory(buyer_id=as_buyer.id)
    response = client.delete(f"/api/v1/addresses/{gone.id}", headers=as_buyer.headers)
    assert response.status_code == 204
    assert response.get_data() == b""
    session.expire_all()
    assert session.get(Address, gone.id).deleted_at is not None
    assert session.get(Address, kept.id).deleted_at is None
    listed = client.get("/api/v1/addresses", headers=as_buyer.headers).json
    assert [a["id"] for a in listed["items"]] == [str(kept.id)]
    assert listed["total"] == 1
    again = client.delete(f"/api/v1/addresses/{gone.id}", headers=as_buyer.headers)
    assert again.status_code == 404
    assert again.json["type"] == "address-not-found"


def test_another_buyers_address_cannot_be_deleted(
    client, as_buyer, as_other_buyer, session
):
    address = AddressFactory(buyer_id=as_other_buyer.id)
    response = client.delete(
        f"/api/v1/addresses/{address.id}", headers=as_buyer.headers
    )
    assert response.status_code == 404
    assert response.json["type"] == "address-not-found"
    session.expire_all()
    assert session.get(Address, address.id).deleted_at is None


def test_unknown_and_malformed_ids_are_not_found(client, as_buyer):
    for address_id in (uuid.uuid4(), "not-a-uuid"):
        response = client.delete(
            f"/api/v1/addresses/{address_id}", headers=as_buyer.headers
        )
        assert response.status_code == 404
        assert response.content_type == "application/problem+json"


def _ended(kind, order_id, buyer_id):
    if kind is OrderDelivered:
        return OrderDelivered(order_id=order_id, buyer_id=buyer_id)
    return kind(order_id=order_id, items=(OrderItem(str(uuid.uuid4()), 1),))


@pytest.mark.parametrize("ending", [OrderCancelled, OrderExpired, OrderDelivered])
def test_an_address_an_order_ships_to_stays_until_the_order_ends(
    client, as_buyer, session, ending
):
    address = AddressFactory(buyer_id=as_buyer.id)
    order_id = str(uuid.uuid4())
    placed = OrderPlaced(
        order_id=order_id, buyer_id=str(as_buyer.id), address_id=str(address.id),
        currency="RUB", total=Decimal("129.90"),
        items=(OrderItem(str(uuid.uuid4()), 1),),
    )  # fmt: skip
    hold_address(session, placed)
    hold_address(session, placed)  # a redelivery changes nothing
    session.flush()
    path = f"/api/v1/addresses/{address.id}"

    refused = client.delete(path, headers=as_buyer.headers)
    assert refused.status_code == 409
    assert refused.json["type"] == "address-in-use"
    session.expire_all()
    assert session.get(Address, address.id).deleted_at is None

    free_address(session, _ended(ending, order_id, str(as_buyer.id)))
    session.flush()
    assert client.delete(path, headers=as_buyer.headers).status_code == 204
