"""Reading payments: the buyer's own and any for an admin; nobody else's."""

from __future__ import annotations

import uuid


def started(client, buyer, place_order):
    order_id = place_order(buyer.id)
    response = client.post(f"/api/v1/orders/{order_id}/payment", headers=buyer.headers)
    assert response.status_code == 201, response.json
    return response.json


def test_the_buyer_reads_their_payment_by_id_and_by_order(client, buyer, place_order):
    payment = started(client, buyer, place_order)

    shown = client.get(f"/api/v1/payments/{payment['id']}", headers=buyer.headers)
    listed = client.get(
        f"/api/v1/payments?order_id={payment['order_id']}", headers=buyer.headers
    )

    assert shown.status_code == 200
    assert shown.json == payment
    assert listed.json["items"] == [payment]
    assert listed.json["total"] == 1


def test_another_buyers_payment_is_not_found_and_not_listed(
    client, buyer, new_buyer, place_order
):
    payment = started(client, buyer, place_order)
    other = new_buyer()

    shown = client.get(f"/api/v1/payments/{payment['id']}", headers=other.headers)
    listed = client.get(
        f"/api/v1/payments?order_id={payment['order_id']}", headers=other.headers
    )

    assert shown.status_code == 404
    assert shown.json["type"] == "payment-not-found"
    assert listed.json["items"] == []


def test_an_admin_reads_any_payment(client, buyer, new_buyer, place_order):
    payment = started(client, buyer, place_order)
    admin = new_buyer("admin")

    shown = client.get(f"/api/v1/payments/{payment['id']}", headers=admin.headers)

    assert shown.status_code == 200
    assert shown.json["id"] == payment["id"]


def test_reading_needs_a_token_and_an_unknown_payment_is_404(client, buyer):
    assert client.get(f"/api/v1/payments/{uuid.uuid4()}").status_code == 401
    missing = client.get(f"/api/v1/payments/{uuid.uuid4()}", headers=buyer.headers)
    assert missing.status_code == 404
