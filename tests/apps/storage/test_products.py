"""The catalog over HTTP: create, read, update, archive; roles, ownership, bad input."""

import uuid
from decimal import Decimal

import pytest
import sqlalchemy as sa

from apps.storage.models import Product
from tests.factories.storage import ProductFactory

BODY = {
    "title": "Air Max 90 Infrared",
    "brand": "Nike",
    "model": "Air Max 90",
    "size": "42.5",
    "color": "white",
    "condition": "new",
    "price": "129.90",
    "currency": "RUB",
    "quantity": 5,
    "description": "Deadstock pair",
}


def product_count(session):
    return session.scalar(sa.select(sa.func.count()).select_from(Product))


def test_seller_creates_a_product_and_anyone_reads_it(client, as_seller):
    created = client.post("/api/v1/products", json=BODY, headers=as_seller.headers)
    assert created.status_code == 201, created.json
    product = created.json
    assert product["seller_id"] == str(as_seller.id)
    assert product["price"] == "129.90"
    assert product["quantity"] == product["available"] == 5
    assert set(product) == {
        "id", "seller_id", "title", "brand", "model", "size", "color", "condition",
        "price", "currency", "quantity", "available", "description", "created_at",
        "updated_at",
    }  # fmt: skip

    shown = client.get(f"/api/v1/products/{product['id']}")
    assert shown.status_code == 200
    assert shown.json == product


def test_price_is_stored_exactly(client, as_seller, session):
    body = {**BODY, "price": "0.10"}
    created = client.post("/api/v1/products", json=body, headers=as_seller.headers).json
    stored = session.get(Product, uuid.UUID(created["id"]))
    assert stored.price == Decimal("0.10")
    assert created["price"] == "0.10"


def test_currency_defaults_to_rub(client, as_seller):
    body = {k: v for k, v in BODY.items() if k != "currency"}
    created = client.post("/api/v1/products", json=body, headers=as_seller.headers)
    assert created.json["currency"] == "RUB"


def test_admin_may_create_a_product(client, as_admin):
    created = client.post("/api/v1/products", json=BODY, headers=as_admin.headers)
    assert created.status_code == 201


def test_anonymous_cannot_create(client, session):
    response = client.post("/api/v1/products", json=BODY)
    assert response.status_code == 401
    assert response.content_type == "application/problem+json"
    assert product_count(session) == 0


def test_buyer_cannot_create(client, as_buyer, session):
    response = client.post("/api/v1/products", json=BODY, headers=as_buyer.headers)
    assert response.status_code == 403
    assert product_count(session) == 0


def test_a_bad_token_is_refused_even_when_browsing(client):
    response = client.get("/api/v1/products", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"quantity": 0}, "quantity"),
        ({"quantity": -3}, "quantity"),
        ({"quantity": "5"}, "quantity"),
        ({"price": "10.999"}, "price"),
        ({"price": "-1.00"}, "price"),
        ({"price": 10.5}, "price"),
        ({"price": "NaN"}, "price"),
        ({"price": "ten"}, "price"),
        ({"price": "1e3"}, "price"),
        ({"price": "\uff11\uff12"}, "price"),
        ({"price": " 5 "}, "price"),
        ({"condition": "mint"}, "condition"),
        ({"currency": "rub"}, "currency"),
        ({"title": ""}, "title"),
        ({"price": "-0"}, "price"),
        ({"price": "-0.00"}, "price"),
        ({"title": "   "}, "title"),
        ({"title": "Air Max \u202egnp.exe"}, "title"),
        ({"title": "Air\u200bMax"}, "title"),
        ({"brand": "Nike\u2066"}, "brand"),
        ({"color": "white\x07"}, "color"),
        ({"seller_id": str(uuid.uuid4())}, "seller_id"),
    ],
)
def test_bad_product_is_refused_and_nothing_is_stored(
    client, as_seller, session, change, field
):
    response = client.post(
        "/api/v1/products", json={**BODY, **change}, headers=as_seller.headers
    )
    assert response.status_code == 422
    assert response.content_type == "application/problem+json"
    assert response.json["type"] == "validation-error"
    assert field in response.json["errors"]
    assert product_count(session) == 0


def test_titles_are_stored_trimmed(client, as_seller):
    response = client.post(
        "/api/v1/products",
        json={**BODY, "title": "  Air Max 90  "},
        headers=as_seller.headers,
    )
    assert response.status_code == 201
    assert response.json["title"] == "Air Max 90"


@pytest.mark.parametrize(
    "change", [{"title": " \t "}, {"title": "x\u200d"}, {"price": "-0"}]
)
def test_a_patch_refuses_blank_control_titles_and_negative_zero(
    client, as_seller, change
):
    product = ProductFactory(seller_id=as_seller.id)
    response = client.patch(
        f"/api/v1/products/{product.id}", json=change, headers=as_seller.headers
    )
    assert response.status_code == 422
    assert set(change) <= set(response.json["errors"])


def test_missing_fields_are_named(client, as_seller):
    response = client.post("/api/v1/products", json={}, headers=as_seller.headers)
    assert response.status_code == 422
    assert {"title", "brand", "model", "size", "color", "condition", "price",
            "quantity"} <= set(response.json["errors"])  # fmt: skip


def test_owner_patches_some_fields(client, as_seller):
    product = ProductFactory(seller_id=as_seller.id, price=Decimal("50.00"))
    response = client.patch(
        f"/api/v1/products/{product.id}",
        json={"price": "75.50", "color": "black", "quantity": 3},
        headers=as_seller.headers,
    )
    assert response.status_code == 200, response.json
    assert response.json["price"] == "75.50"
    assert response.json["color"] == "black"
    assert response.json["quantity"] == response.json["available"] == 3
    assert response.json["title"] == product.title


def test_admin_patches_any_product(client, as_admin):
    product = ProductFactory()
    response = client.patch(
        f"/api/v1/products/{product.id}",
        json={"title": "Fixed"},
        headers=as_admin.headers,
    )
    assert response.status_code == 200
    assert response.json["title"] == "Fixed"


def test_another_sellers_product_is_not_found_for_writes(
    client, as_seller, as_other_seller, session
):
    product = ProductFactory(seller_id=as_seller.id, title="Mine")
    url = f"/api/v1/products/{product.id}"
    patched = client.patch(
        url, json={"title": "Yours"}, headers=as_other_seller.headers
    )
    deleted = client.delete(url, headers=as_other_seller.headers)
    assert patched.status_code == deleted.status_code == 404
    assert patched.json["type"] == "product-not-found"
    session.expire_all()
    assert session.get(Product, product.id).title == "Mine"
    assert session.get(Product, product.id).archived_at is None


@pytest.mark.parametrize("field", ["id", "seller_id", "available", "reserved"])
def test_patching_ids_or_derived_fields_is_refused(client, as_seller, field):
    product = ProductFactory(seller_id=as_seller.id)
    value = 1 if field in ("available", "reserved") else str(uuid.uuid4())
    response = client.patch(
        f"/api/v1/products/{product.id}", json={field: value}, headers=as_seller.headers
    )
    assert response.status_code == 422
    assert field in response.json["errors"]


def test_lowering_quantity_below_reserved_is_a_conflict(client, as_seller, session):
    product = ProductFactory(seller_id=as_seller.id, quantity=10, reserved=4)
    url = f"/api/v1/products/{product.id}"
    refused = client.patch(url, json={"quantity": 3}, headers=as_seller.headers)
    assert refused.status_code == 409
    assert refused.json["type"] == "quantity-below-reserved"
    assert refused.json["reserved"] == 4
    allowed = client.patch(url, json={"quantity": 4}, headers=as_seller.headers)
    assert allowed.status_code == 200
    assert allowed.json["available"] == 0


def test_archived_product_is_gone_from_reads_and_writes(client, as_seller):
    product = ProductFactory(seller_id=as_seller.id)
    url = f"/api/v1/products/{product.id}"
    assert client.delete(url, headers=as_seller.headers).status_code == 204
    assert client.get(url).status_code == 404
    assert client.get("/api/v1/products").json["total"] == 0
    assert client.delete(url, headers=as_seller.headers).status_code == 404
    assert (
        client.patch(url, json={"title": "x"}, headers=as_seller.headers).status_code
        == 404
    )


def test_unknown_product_is_not_found(client):
    response = client.get(f"/api/v1/products/{uuid.uuid4()}")
    assert response.status_code == 404
    assert response.json["type"] == "product-not-found"


def test_a_subject_that_is_not_a_user_id_may_not_sell(client, make_token, session):
    headers = {"Authorization": f"Bearer {make_token('not-a-uuid', 'seller')}"}
    response = client.post("/api/v1/products", json=BODY, headers=headers)
    assert response.status_code == 403
    assert product_count(session) == 0


def test_the_openapi_document_describes_the_catalog_and_reservations(client):
    spec = client.get("/openapi.json").json
    assert {"/api/v1/products", "/api/v1/products/{product_id}",
            "/api/v1/internal/reservations"} <= set(spec["paths"])  # fmt: skip
    price = spec["components"]["schemas"]["ProductCreate"]["properties"]["price"]
    assert (price["type"], price["format"]) == ("string", "decimal")
