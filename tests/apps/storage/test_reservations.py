"""Internal reservations over HTTP: all or nothing, idempotent, legal moves only."""

import uuid
from decimal import Decimal

import pytest
import sqlalchemy as sa

from apps.storage.models import Product, Reservation
from tests.factories.storage import ProductFactory
from tests.metrics import counted

URL = "/api/v1/internal/reservations"


def stock(session, product):
    session.expire_all()
    row = session.get(Product, product.id)
    return row.quantity, row.reserved, row.sold


def reservation_count(session):
    return session.scalar(sa.select(sa.func.count()).select_from(Reservation))


def reserve(client, headers, order_id, *lines):
    body = {
        "order_id": str(order_id),
        "items": [{"product_id": str(p.id), "quantity": n} for p, n in lines],
    }
    return client.post(URL, json=body, headers=headers)


def test_reserve_holds_every_line_and_snapshots_price(client, as_service, session):
    a = ProductFactory(quantity=5, price=Decimal("10.50"), title="A")
    b = ProductFactory(quantity=2, price=Decimal("99.00"), title="B")
    order_id = uuid.uuid4()
    response = reserve(client, as_service, order_id, (a, 3), (b, 2))
    assert response.status_code == 201, response.json
    body = response.json
    assert body["order_id"] == str(order_id)
    assert body["status"] == "RESERVED"
    lines = {i["product_id"]: i for i in body["items"]}
    assert lines[str(a.id)] == {
        "product_id": str(a.id), "quantity": 3, "title": "A", "unit_price": "10.50",
        "currency": "RUB",
    }  # fmt: skip
    assert lines[str(b.id)]["unit_price"] == "99.00"
    assert stock(session, a) == (5, 3, 0)
    assert stock(session, b) == (2, 2, 0)
    assert client.get(f"/api/v1/products/{a.id}").json["available"] == 2


def test_a_repeat_returns_the_same_reservation_and_holds_nothing_more(
    client, as_service, session
):
    a = ProductFactory(quantity=5)
    order_id = uuid.uuid4()
    first = reserve(client, as_service, order_id, (a, 2))
    again = reserve(client, as_service, order_id, (a, 2))
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json == first.json
    assert stock(session, a) == (5, 2, 0)
    assert reservation_count(session) == 1


def test_other_items_for_the_same_order_are_a_conflict(client, as_service, session):
    a = ProductFactory(quantity=5)
    order_id = uuid.uuid4()
    reserve(client, as_service, order_id, (a, 2))
    response = reserve(client, as_service, order_id, (a, 3))
    assert response.status_code == 409
    assert response.json["type"] == "reservation-mismatch"
    assert stock(session, a) == (5, 2, 0)


def test_all_or_nothing_when_one_line_lacks_stock(client, as_service, session):
    a = ProductFactory(quantity=5)
    b = ProductFactory(quantity=1)
    response = reserve(client, as_service, uuid.uuid4(), (a, 2), (b, 2))
    assert response.status_code == 409
    assert response.json["type"] == "insufficient-stock"
    assert response.json["product_id"] == str(b.id)
    assert response.json["available"] == 1
    assert stock(session, a) == (5, 0, 0)
    assert stock(session, b) == (1, 0, 0)
    assert reservation_count(session) == 0


@pytest.mark.parametrize("archived", [False, True])
def test_unknown_or_archived_product_cannot_be_reserved(
    client, as_service, session, archived
):
    a = ProductFactory(quantity=5)
    if archived:
        ghost = ProductFactory(quantity=5)
        ghost.archived_at = ghost.created_at
        session.flush()
    else:
        ghost = ProductFactory.build()
    response = reserve(client, as_service, uuid.uuid4(), (a, 1), (ghost, 1))
    assert response.status_code == 404
    assert response.json["type"] == "product-not-found"
    assert response.json["product_id"] == str(ghost.id)
    assert stock(session, a) == (5, 0, 0)
    assert reservation_count(session) == 0


@pytest.mark.parametrize(
    ("items", "field"),
    [
        ([], "items"),
        ([{"quantity": 1}], "items.0.product_id"),
        ([{"product_id": "P", "quantity": 0}], "items.0.quantity"),
        ([{"product_id": "P", "quantity": -2}], "items.0.quantity"),
        (
            [{"product_id": "P", "quantity": 1}, {"product_id": "P", "quantity": 1}],
            "items.1.product_id",
        ),
    ],
)
def test_bad_items_are_a_validation_problem_and_change_nothing(
    client, as_service, session, items, field
):
    a = ProductFactory(quantity=5)
    for item in items:
        if item.get("product_id") == "P":
            item["product_id"] = str(a.id)
    body = {"order_id": str(uuid.uuid4()), "items": items}
    response = client.post(URL, json=body, headers=as_service)
    assert response.status_code == 422
    assert field in response.json["errors"]
    assert stock(session, a) == (5, 0, 0)
    assert reservation_count(session) == 0


def test_release_gives_stock_back_once(client, as_service, session):
    a = ProductFactory(quantity=5)
    order_id = uuid.uuid4()
    reserve(client, as_service, order_id, (a, 3))
    for _ in range(2):
        response = client.post(f"{URL}/{order_id}/release", headers=as_service)
        assert response.status_code == 200
        assert response.json["status"] == "RELEASED"
        assert stock(session, a) == (5, 0, 0)


def test_commit_turns_the_reservation_into_a_sale_once(client, as_service, session):
    a = ProductFactory(quantity=5)
    order_id = uuid.uuid4()
    reserve(client, as_service, order_id, (a, 3))
    for _ in range(2):
        response = client.post(f"{URL}/{order_id}/commit", headers=as_service)
        assert response.status_code == 200
        assert response.json["status"] == "COMMITTED"
        assert stock(session, a) == (2, 0, 3)
    assert client.get(f"/api/v1/products/{a.id}").json["available"] == 2


@pytest.mark.parametrize(
    ("first", "then"), [("release", "commit"), ("commit", "release")]
)
def test_moving_a_closed_reservation_elsewhere_is_a_conflict(
    client, as_service, session, first, then
):
    a = ProductFactory(quantity=5)
    order_id = uuid.uuid4()
    reserve(client, as_service, order_id, (a, 3))
    client.post(f"{URL}/{order_id}/{first}", headers=as_service)
    before = stock(session, a)
    response = client.post(f"{URL}/{order_id}/{then}", headers=as_service)
    assert response.status_code == 409
    assert response.json["type"] == "illegal-transition"
    assert stock(session, a) == before


def test_a_reserve_repeated_after_release_is_refused(client, as_service, session):
    a = ProductFactory(quantity=5)
    order_id = uuid.uuid4()
    reserve(client, as_service, order_id, (a, 3))
    client.post(f"{URL}/{order_id}/release", headers=as_service)
    again = reserve(client, as_service, order_id, (a, 3))
    assert again.status_code == 409
    assert again.json["type"] == "illegal-transition"
    assert stock(session, a) == (5, 0, 0)


def test_a_release_that_overtakes_its_reserve_makes_the_late_reserve_fail(
    client, as_service, session
):
    a = ProductFactory(quantity=5)
    order_id = uuid.uuid4()
    released = client.post(f"{URL}/{order_id}/release", headers=as_service)
    assert released.status_code == 200
    assert released.json["status"] == "RELEASED"
    late = reserve(client, as_service, order_id, (a, 2))
    assert late.status_code == 409
    assert stock(session, a) == (5, 0, 0)
    commit = client.post(f"{URL}/{order_id}/commit", headers=as_service)
    assert commit.status_code == 409


def test_archived_product_keeps_its_reservations_closable(client, as_service, session):
    a = ProductFactory(quantity=5)
    order_id = uuid.uuid4()
    reserve(client, as_service, order_id, (a, 2))
    a.archived_at = a.created_at
    session.flush()
    assert (
        client.post(f"{URL}/{order_id}/commit", headers=as_service).status_code == 200
    )
    assert stock(session, a) == (3, 0, 2)


def test_unknown_order_has_no_reservation(client, as_service):
    order_id = uuid.uuid4()
    for response in (
        client.get(f"{URL}/{order_id}", headers=as_service),
        client.post(f"{URL}/{order_id}/commit", headers=as_service),
    ):
        assert response.status_code == 404
        assert response.json["type"] == "reservation-not-found"


def test_reservation_can_be_read_back(client, as_service):
    a = ProductFactory(quantity=5)
    order_id = uuid.uuid4()
    made = reserve(client, as_service, order_id, (a, 1)).json
    assert client.get(f"{URL}/{order_id}", headers=as_service).json == made


def test_reservations_need_a_service_token(client, as_seller, session):
    a = ProductFactory(quantity=5)
    anonymous = reserve(client, {}, uuid.uuid4(), (a, 1))
    user = reserve(client, as_seller.headers, uuid.uuid4(), (a, 1))
    assert anonymous.status_code == user.status_code == 401
    assert stock(session, a) == (5, 0, 0)


def test_reservations_are_counted_by_what_happened_once_each(client, as_service):
    a = ProductFactory(quantity=5)
    outcomes = ("reserved", "released", "committed", "insufficient")
    before = {o: counted("stock_reservations_total", outcome=o) for o in outcomes}
    units = {o: counted("stock_reserved_units_total", outcome=o) for o in outcomes}
    kept, released = uuid.uuid4(), uuid.uuid4()
    for order_id in (kept, released, kept):  # the repeat counts nothing
        reserve(client, as_service, order_id, (a, 2))
    assert reserve(client, as_service, uuid.uuid4(), (a, 2)).status_code == 409
    for _ in range(2):
        client.post(f"{URL}/{released}/release", headers=as_service)
        client.post(f"{URL}/{kept}/commit", headers=as_service)
    now = {o: counted("stock_reservations_total", outcome=o) for o in outcomes}
    assert {o: now[o] - before[o] for o in outcomes} == {
        "reserved": 2, "released": 1, "committed": 1, "insufficient": 1,
    }  # fmt: skip
    now_units = {o: counted("stock_reserved_units_total", outcome=o) for o in outcomes}
    assert {o: now_units[o] - units[o] for o in outcomes} == {
        "reserved": 4, "released": 2, "committed": 2, "insufficient": 0,
    }  # fmt: skip
