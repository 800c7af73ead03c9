"""Who sees which orders, and how much of each: buyer, seller, admin."""

import uuid
from decimal import Decimal

import pytest

from clients.orders import OrderStatus
from tests.factories.orders import OrderFactory

URL = "/api/v1/orders"


@pytest.fixture
def shop(session, as_buyer, as_other_buyer, as_seller, as_other_seller):
    """Three orders: the buyer's mixed one, the buyer's paid one, another buyer's."""
    mine = {"seller_id": as_seller.id, "unit_price": Decimal("10.00"), "quantity": 2}
    theirs = {"seller_id": as_other_seller.id, "unit_price": Decimal("5.00")}
    mixed = OrderFactory(buyer_id=as_buyer.id, lines=[mine, theirs])
    paid = OrderFactory(
        buyer_id=as_buyer.id, status=OrderStatus.PAID, lines=[{"quantity": 3}]
    )
    other = OrderFactory(buyer_id=as_other_buyer.id, lines=[dict(mine, quantity=1)])
    session.commit()
    return {"mixed": mixed, "paid": paid, "other": other}


def ids(response):
    assert response.status_code == 200, response.json
    return {item["id"] for item in response.json["items"]}


def test_a_buyer_lists_only_their_own_orders(client, shop, as_buyer):
    assert ids(client.get(URL, headers=as_buyer.headers)) == {
        str(shop["mixed"].id), str(shop["paid"].id)
    }  # fmt: skip


def test_a_seller_lists_orders_holding_their_products_with_only_their_part(
    client, shop, as_seller
):
    response = client.get(URL, headers=as_seller.headers)
    assert ids(response) == {str(shop["mixed"].id), str(shop["other"].id)}
    by_id = {o["id"]: o for o in response.json["items"]}
    mixed = by_id[str(shop["mixed"].id)]
    assert [i["quantity"] for i in mixed["items"]] == [2]
    assert mixed["total"] == "20.00"
    assert by_id[str(shop["other"].id)]["total"] == "10.00"


def test_an_admin_lists_every_order_whole(client, shop, as_admin):
    response = client.get(URL, headers=as_admin.headers)
    assert ids(response) == {str(o.id) for o in shop.values()}
    mixed = next(o for o in response.json["items"] if o["id"] == str(shop["mixed"].id))
    assert len(mixed["items"]) == 2
    assert mixed["total"] == "25.00"


def test_the_list_filters_by_status(client, shop, as_buyer, as_admin):
    paid = client.get(URL, query_string={"status": "PAID"}, headers=as_buyer.headers)
    assert ids(paid) == {str(shop["paid"].id)}
    waiting = client.get(
        URL, query_string={"status": "AWAITING_PAYMENT"}, headers=as_admin.headers
    )
    assert ids(waiting) == {str(shop["mixed"].id), str(shop["other"].id)}


@pytest.mark.parametrize(
    "query",
    [{"status": "LOST"}, {"status": "paid"}, {"page": 0}, {"page_size": 101}],
)
def test_a_bad_filter_or_page_is_422(client, as_buyer, query):
    response = client.get(URL, query_string=query, headers=as_buyer.headers)
    assert response.status_code == 422
    assert set(response.json["errors"]) == set(query)


def test_the_list_is_paginated_newest_first(client, session, as_buyer):
    orders = [OrderFactory(buyer_id=as_buyer.id) for _ in range(5)]
    session.commit()
    newest_first = [
        str(o.id)
        for o in sorted(orders, key=lambda o: (o.created_at, o.id), reverse=True)
    ]
    first = client.get(
        URL, query_string={"page_size": 2}, headers=as_buyer.headers
    ).json
    last = client.get(
        URL, query_string={"page_size": 2, "page": 3}, headers=as_buyer.headers
    ).json
    assert (first["total"], first["page"], first["page_size"]) == (5, 1, 2)
    assert [o["id"] for o in first["items"]] == newest_first[:2]
    assert [o["id"] for o in last["items"]] == newest_first[4:]


def test_an_order_is_shown_to_its_buyer_and_admins_and_in_part_to_its_sellers(
    client, shop, as_buyer, as_seller, as_admin
):
    url = f"{URL}/{shop['mixed'].id}"
    whole = client.get(url, headers=as_buyer.headers)
    assert whole.status_code == 200
    assert whole.json["total"] == "25.00"
    assert set(whole.json) == {
        "id", "buyer_id", "status", "items", "total", "currency", "address_id",
        "expires_at", "created_at", "updated_at",
    }  # fmt: skip
    assert client.get(url, headers=as_admin.headers).json == whole.json
    part = client.get(url, headers=as_seller.headers).json
    assert (len(part["items"]), part["total"]) == (1, "20.00")


def test_another_buyers_order_is_not_found(client, shop, as_buyer, as_other_seller):
    for who, order in ((as_buyer, shop["other"]), (as_other_seller, shop["paid"])):
        response = client.get(f"{URL}/{order.id}", headers=who.headers)
        assert response.status_code == 404
        assert response.json["type"] == "order-not-found"
    unknown = client.get(f"{URL}/{uuid.uuid4()}", headers=as_buyer.headers)
    assert unknown.status_code == 404


def test_reading_needs_a_token(client, shop):
    assert client.get(URL).status_code == 401
    assert client.get(f"{URL}/{shop['mixed'].id}").status_code == 401
