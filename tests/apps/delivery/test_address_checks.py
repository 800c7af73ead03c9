"""The internal address check: service token only, the buyer's live addresses only."""

import uuid

import pytest

from chomik.db import utcnow
from tests.factories.delivery import AddressFactory


def check(client, headers, address_id, buyer_id):
    return client.get(
        f"/api/v1/internal/addresses/{address_id}?buyer_id={buyer_id}",
        headers=headers,
    )


def test_the_buyers_address_is_answered_with_its_owner(client, as_service):
    address = AddressFactory(country="DE", phone="+4930123456")
    response = check(client, as_service, address.id, address.buyer_id)
    assert response.status_code == 200, response.json
    assert response.json["id"] == str(address.id)
    assert response.json["buyer_id"] == str(address.buyer_id)
    assert (response.json["country"], response.json["phone"]) == ("DE", "+4930123456")
    assert set(response.json) == {
        "id", "buyer_id", "recipient", "phone", "country", "city", "street",
        "postal_code", "created_at",
    }  # fmt: skip


def test_another_buyers_address_is_not_found(client, as_service):
    address = AddressFactory()
    response = check(client, as_service, address.id, uuid.uuid4())
    assert response.status_code == 404
    assert response.json["type"] == "address-not-found"


def test_a_deleted_or_unknown_address_is_not_found(client, as_service):
    deleted = AddressFactory(deleted_at=utcnow())
    assert check(client, as_service, deleted.id, deleted.buyer_id).status_code == 404
    assert check(client, as_service, uuid.uuid4(), uuid.uuid4()).status_code == 404


def test_a_deleted_address_fails_the_check_after_the_buyer_deletes_it(
    client, as_service, as_buyer
):
    address = AddressFactory(buyer_id=as_buyer.id)
    assert check(client, as_service, address.id, as_buyer.id).status_code == 200
    client.delete(f"/api/v1/addresses/{address.id}", headers=as_buyer.headers)
    assert check(client, as_service, address.id, as_buyer.id).status_code == 404


@pytest.mark.parametrize("actor", ["as_buyer", "as_seller", "as_admin"])
def test_user_tokens_are_refused(client, request, actor):
    user = request.getfixturevalue(actor)
    address = AddressFactory(buyer_id=user.id)
    response = check(client, user.headers, address.id, user.id)
    assert response.status_code == 401
    assert response.content_type == "application/problem+json"


def test_no_token_is_refused(client):
    address = AddressFactory()
    response = check(client, {}, address.id, address.buyer_id)
    assert response.status_code == 401


@pytest.mark.parametrize("query", ["", "?buyer_id=nope"])
def test_the_buyer_id_is_required(client, as_service, query):
    address = AddressFactory()
    response = client.get(
        f"/api/v1/internal/addresses/{address.id}{query}", headers=as_service
    )
    assert response.status_code == 422
    assert list(response.json["errors"]) == ["buyer_id"]
