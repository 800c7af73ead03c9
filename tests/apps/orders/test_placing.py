"""Placing orders over HTTP: priced from storage, reserved, stored unpaid."""

import dataclasses
import datetime as dt
import uuid
from decimal import Decimal

import pytest
import sqlalchemy as sa

from apps.orders import create_app
from apps.orders.models import Order, OrderStatusChange, PlacementAttempt
from apps.orders.schemas import MAX_LINES
from apps.orders.services import Ports
from chomik.db import utcnow
from clients.orders import OrderStatus
from clients.storage import StockItem, StorageClient
from tests.apps.orders.conftest import Placing, stock_of, storage_client
from tests.factories.storage import ProductFactory
from tests.metrics import counted

URL = "/api/v1/orders"


def outbox_types(session):
    return session.scalars(sa.text("SELECT type FROM outbox_events ORDER BY seq")).all()


def test_an_order_snapshots_its_items_reserves_and_awaits_payment(
    place, as_buyer, as_seller, session, storage_session, settings
):
    a = ProductFactory(
        seller_id=as_seller.id, title="Samba", price=Decimal("10.50"), quantity=5
    )
    b = ProductFactory(price=Decimal("99.00"), quantity=2)
    response = place(as_buyer, (a, 3), (b, 1))
    assert response.status_code == 201, response.json
    body = response.json
    assert body["status"] == "AWAITING_PAYMENT"
    assert body["buyer_id"] == str(as_buyer.id)
    assert body["total"] == "130.50"
    assert body["currency"] == "RUB"
    assert sorted(body["items"], key=lambda i: i["title"]) == sorted(
        [
            {"product_id": str(a.id), "title": "Samba", "quantity": 3,
             "unit_price": "10.50"},
            {"product_id": str(b.id), "title": b.title, "quantity": 1,
             "unit_price": "99.00"},
        ],
        key=lambda i: i["title"],
    )  # fmt: skip
    expires = dt.datetime.fromisoformat(body["expires_at"])
    ttl = dt.timedelta(seconds=settings.order_ttl)
    assert utcnow() + ttl - dt.timedelta(seconds=30) < expires <= utcnow() + ttl
    assert stock_of(storage_session, a) == (5, 3, 0)
    assert stock_of(storage_session, b) == (2, 1, 0)
    order = session.get(Order, uuid.UUID(body["id"]))
    assert {i.product_id: i.seller_id for i in order.items}[a.id] == as_seller.id
    assert order.next_check_at == order.expires_at
    history = session.scalars(sa.select(OrderStatusChange)).all()
    assert [(h.from_status, h.to_status) for h in history] == [
        (None, OrderStatus.AWAITING_PAYMENT)
    ]
    assert outbox_types(session) == ["order.placed"]
    assert session.scalar(sa.select(sa.func.count()).select_from(PlacementAttempt)) == 0


def test_the_same_key_and_body_answer_the_same_order_once(
    place, as_buyer, storage_session, session
):
    product = ProductFactory(quantity=5)
    body = place.body(as_buyer, (product, 2))
    first = place(as_buyer, key="key-1", body=body)
    again = place(as_buyer, key="key-1", body=body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json == first.json
    assert again.headers["Idempotent-Replayed"] == "true"
    assert stock_of(storage_session, product) == (5, 2, 0)
    assert session.scalar(sa.select(sa.func.count()).select_from(Order)) == 1


def test_the_same_key_with_another_body_is_refused(place, as_buyer, storage_session):
    product = ProductFactory(quantity=5)
    assert place(as_buyer, (product, 1), key="key-2").status_code == 201
    response = place(as_buyer, (product, 2), key="key-2")
    assert response.status_code == 422
    assert response.json["type"] == "idempotency-key-reused"
    assert stock_of(storage_session, product) == (5, 1, 0)


def test_keys_are_scoped_to_the_buyer(place, as_buyer, as_other_buyer):
    product = ProductFactory(quantity=5)
    first = place(as_buyer, (product, 1), key="shared")
    other = place(as_other_buyer, (product, 1), key="shared")
    assert (first.status_code, other.status_code) == (201, 201)
    assert first.json["id"] != other.json["id"]


def test_not_enough_stock_names_every_short_product_and_reserves_nothing(
    place, as_buyer, storage_session, session
):
    plenty = ProductFactory(quantity=5)
    short = ProductFactory(quantity=1)
    shorter = ProductFactory(quantity=0)
    response = place(as_buyer, (plenty, 1), (short, 2), (shorter, 1))
    assert response.status_code == 409
    assert response.json["type"] == "insufficient-stock"
    assert sorted(response.json["product_ids"]) == sorted(
        [str(short.id), str(shorter.id)]
    )
    assert stock_of(storage_session, plenty) == (5, 0, 0)
    assert session.scalar(sa.select(sa.func.count()).select_from(Order)) == 0


class RivalFirst(StorageClient):
    """Storage where a rival order takes the last unit just before our reserve."""

    rival: tuple = ()

    def reserve(self, order_id, items):
        if self.rival:
            rival, self.rival = self.rival, ()
            super().reserve(uuid.uuid4(), [StockItem(*rival)])
        return super().reserve(order_id, items)


def test_stock_taken_between_the_check_and_the_reserve_is_a_409_with_nothing_held(
    make_app, storage_app, addresses, as_buyer, storage_session, session
):
    a = ProductFactory(quantity=5)
    b = ProductFactory(quantity=1)
    raced = storage_client(storage_app, RivalFirst)
    raced.rival = (b.id, 1)
    place = Placing(make_app(raced, addresses).test_client(), addresses)
    response = place(as_buyer, (a, 2), (b, 1))
    assert response.status_code == 409
    assert response.json["product_ids"] == [str(b.id)]
    assert stock_of(storage_session, a) == (5, 0, 0)
    assert stock_of(storage_session, b) == (1, 1, 0)  # the rival's unit only
    assert session.scalar(sa.select(sa.func.count()).select_from(PlacementAttempt)) == 0


def test_unknown_and_archived_products_are_named(place, as_buyer, storage_session):
    listed = ProductFactory(quantity=5)
    archived = ProductFactory(quantity=5, archived_at=utcnow())
    missing = uuid.uuid4()
    body = place.body(as_buyer, (listed, 1), (archived, 1))
    body["items"].append({"product_id": str(missing), "quantity": 1})
    response = place(as_buyer, body=body)
    assert response.status_code == 422
    assert response.json["type"] == "unknown-products"
    assert response.json["product_ids"] == [str(archived.id), str(missing)]
    assert set(response.json["errors"]) == {"items.1.product_id", "items.2.product_id"}
    assert stock_of(storage_session, listed) == (5, 0, 0)


def test_an_order_of_the_most_lines_asks_the_catalog_twice(
    make_app, storage_app, addresses, as_buyer, storage_session, monkeypatch
):
    listed = ProductFactory(quantity=5)
    counted_storage = storage_client(storage_app)
    calls = []
    send = counted_storage.http.request

    def request(method, path, **options):
        calls.append((method, path))
        return send(method, path, **options)

    monkeypatch.setattr(counted_storage.http, "request", request)
    place = Placing(make_app(counted_storage, addresses).test_client(), addresses)
    body = place.body(as_buyer, (listed, 1))
    body["items"] += [
        {"product_id": str(uuid.uuid4()), "quantity": 1} for _ in range(MAX_LINES - 1)
    ]

    response = place(as_buyer, body=body)

    assert response.status_code == 422
    assert len(response.json["product_ids"]) == MAX_LINES - 1
    assert calls == [("GET", "/api/v1/products")] * 2  # a call per 50, not per line
    assert stock_of(storage_session, listed) == (5, 0, 0)


def test_items_in_several_currencies_are_refused(place, as_buyer, storage_session):
    rub = ProductFactory(currency="RUB")
    usd = ProductFactory(currency="USD")
    response = place(as_buyer, (rub, 1), (usd, 1))
    assert response.status_code == 422
    assert response.json["type"] == "mixed-currencies"
    assert stock_of(storage_session, rub) == (10, 0, 0)


@pytest.mark.parametrize(
    ("lines", "total"),
    [
        ([("0.00", 1)], "0.00"),
        ([("0.00", 3), ("0.00", 1)], "0.00"),
        ([("9999999999.99", 2)], "19999999999.98"),
        ([("5000000000.00", 1), ("5000000000.00", 1)], "10000000000.00"),
    ],
)
def test_a_total_no_payment_can_charge_is_refused_naming_it(
    place, as_buyer, storage_session, session, lines, total
):
    products = [
        (ProductFactory(price=Decimal(price), quantity=5), quantity)
        for price, quantity in lines
    ]
    response = place(as_buyer, *products)
    assert response.status_code == 422, response.json
    problem = response.json
    assert problem["type"] == "total-not-payable"
    assert (problem["total"], problem["currency"]) == (total, "RUB")
    assert (problem["minimum"], problem["maximum"]) == ("0.01", "9999999999.99")
    assert total in problem["detail"]
    assert "items" in problem["errors"]
    for product, _ in products:
        assert stock_of(storage_session, product) == (5, 0, 0)
    assert session.scalar(sa.select(sa.func.count()).select_from(Order)) == 0
    assert session.scalar(sa.select(sa.func.count()).select_from(PlacementAttempt)) == 0


class RepricedFirst(StorageClient):
    """Storage where the seller raises a price just before our reserve."""

    reprice = None

    def reserve(self, order_id, items):
        if self.reprice is not None:
            reprice, self.reprice = self.reprice, None
            reprice()
        return super().reserve(order_id, items)


def test_a_price_raised_past_payable_before_the_reserve_is_refused_and_released(
    make_app, storage_app, addresses, as_buyer, storage_session, session
):
    product = ProductFactory(price=Decimal("100.00"), quantity=5)

    def reprice():
        product.price = Decimal("9999999999.99")
        storage_session.flush()

    raced = storage_client(storage_app, RepricedFirst)
    raced.reprice = reprice
    place = Placing(make_app(raced, addresses).test_client(), addresses)
    response = place(as_buyer, (product, 2))
    assert response.status_code == 422, response.json
    assert response.json["type"] == "total-not-payable"
    assert response.json["total"] == "19999999999.98"
    assert stock_of(storage_session, product) == (5, 0, 0)
    assert session.scalar(sa.select(sa.func.count()).select_from(Order)) == 0


@pytest.mark.parametrize(
    ("lines", "total"),
    [([("0.01", 1)], "0.01"), ([("9999999999.98", 1), ("0.01", 1)], "9999999999.99")],
)
def test_the_smallest_and_largest_payable_totals_are_placed(
    place, as_buyer, lines, total
):
    products = [
        (ProductFactory(price=Decimal(price), quantity=5), quantity)
        for price, quantity in lines
    ]
    response = place(as_buyer, *products)
    assert response.status_code == 201, response.json
    assert response.json["total"] == total


def test_an_address_that_is_not_the_buyers_is_refused(
    place, as_buyer, as_other_buyer, addresses, storage_session
):
    product = ProductFactory(quantity=5)
    theirs = addresses.add(as_other_buyer.id)
    for address_id in (theirs, uuid.uuid4()):
        response = place(as_buyer, (product, 1), address_id=address_id)
        assert response.status_code == 422
        assert response.json["type"] == "unknown-address"
        assert "address_id" in response.json["errors"]
    assert stock_of(storage_session, product) == (5, 0, 0)


@pytest.mark.parametrize(
    ("items", "field"),
    [
        ([], "items"),
        ([{"quantity": 1}], "items.0.product_id"),
        ([{"product_id": "P", "quantity": 0}], "items.0.quantity"),
        ([{"product_id": "P", "quantity": -1}], "items.0.quantity"),
        ([{"product_id": "P", "quantity": 1001}], "items.0.quantity"),
        ([{"product_id": "P", "quantity": "2"}], "items.0.quantity"),
        ([{"product_id": "P", "quantity": 1.5}], "items.0.quantity"),
        ([{"product_id": "not-a-uuid", "quantity": 1}], "items.0.product_id"),
        (
            [{"product_id": "P", "quantity": 1}, {"product_id": "P", "quantity": 2}],
            "items.1.product_id",
        ),
    ],
)
def test_bad_items_are_422_naming_the_field(place, as_buyer, items, field, addresses):
    product = ProductFactory(quantity=5)
    for item in items:
        if item.get("product_id") == "P":
            item["product_id"] = str(product.id)
    body = {"items": items, "address_id": str(addresses.add(as_buyer.id))}
    response = place(as_buyer, body=body)
    assert response.status_code == 422, response.json
    assert field in response.json["errors"]


def test_a_missing_or_bad_address_id_is_422(place, as_buyer):
    product = ProductFactory(quantity=5)
    body = place.body(as_buyer, (product, 1))
    for address in (None, "nope", 7):
        if address is None:
            body.pop("address_id")
        else:
            body["address_id"] = address
        response = place(as_buyer, body=body)
        assert response.status_code == 422
        assert "address_id" in response.json["errors"]


@pytest.mark.parametrize("key", [None, "", "k" * 256, "bad\x01key", "clé"])
def test_a_missing_empty_over_long_or_malformed_key_is_400(
    client, place, as_buyer, key, storage_session
):
    product = ProductFactory(quantity=5)
    headers = dict(as_buyer.headers)
    if key is not None:
        headers["Idempotency-Key"] = key
    response = client.post(
        URL, json=place.body(as_buyer, (product, 1)), headers=headers
    )
    assert response.status_code == 400
    assert response.json["type"] == (
        "idempotency-key-missing" if key is None else "idempotency-key-invalid"
    )
    assert stock_of(storage_session, product) == (5, 0, 0)


def test_a_255_character_key_is_accepted(place, as_buyer):
    product = ProductFactory(quantity=5)
    assert place(as_buyer, (product, 1), key="k" * 255).status_code == 201


def test_only_buyers_place_orders(place, as_seller, client, as_buyer):
    product = ProductFactory(quantity=5)
    response = place(as_seller, (product, 1))
    assert response.status_code == 403
    anonymous = client.post(URL, json=place.body(as_buyer, (product, 1)))
    assert anonymous.status_code == 401


def test_placements_are_timed_by_outcome_and_a_repeat_is_a_replay(place, as_buyer):
    outcomes = ("placed", "replayed", "insufficient_stock", "refused")
    name = "order_placement_seconds_count"
    before = {o: counted(name, outcome=o) for o in outcomes}
    replays = counted(
        "idempotent_replays_total", operation="orders.place", outcome="replayed"
    )
    product = ProductFactory(quantity=1)
    body = place.body(as_buyer, (product, 1))
    assert place(as_buyer, key="timed", body=body).status_code == 201
    assert place(as_buyer, key="timed", body=body).status_code == 200
    assert place(as_buyer, (product, 1)).status_code == 409
    unknown = place.body(as_buyer, (product, 1))
    unknown["items"][0]["product_id"] = str(uuid.uuid4())
    assert place(as_buyer, body=unknown).status_code == 422
    # The repeat is answered from the stored answer, before placing: a replay.
    assert {o: counted(name, outcome=o) - before[o] for o in outcomes} == {
        "placed": 1, "replayed": 0, "insufficient_stock": 1, "refused": 1,
    }  # fmt: skip
    assert (
        counted(
            "idempotent_replays_total", operation="orders.place", outcome="replayed"
        )
        == replays + 1
    )


def test_a_buyer_holds_at_most_the_unpaid_orders_allowed(
    dbs, settings, storage, addresses, as_buyer, as_other_buyer, storage_session
):
    app = create_app(
        dataclasses.replace(settings, order_max_unpaid=2),
        ports=Ports(storage=storage, addresses=addresses),
    )
    place = Placing(dbs.bind_app(app, "orders").test_client(), addresses)
    client = place.client
    product = ProductFactory(quantity=10)
    first = place(as_buyer, (product, 1), key="first")
    assert first.status_code == 201
    assert place(as_buyer, (product, 1)).status_code == 201

    refused = place(as_buyer, (product, 1))

    assert refused.status_code == 409
    assert refused.content_type == "application/problem+json"
    assert (refused.json["type"], refused.json["limit"]) == (
        "too-many-unpaid-orders",
        2,
    )
    assert stock_of(storage_session, product) == (10, 2, 0)  # nothing more reserved
    assert place(as_buyer, (product, 1), key="first").status_code == 200  # a replay
    assert place(as_other_buyer, (product, 1)).status_code == 201  # theirs apart
    cancelled = client.post(
        f"/api/v1/orders/{first.json['id']}/cancel", headers=as_buyer.headers
    )
    assert cancelled.status_code == 200
    assert place(as_buyer, (product, 1)).status_code == 201


def test_a_placement_waits_for_the_buyers_other_one_a_bounded_time(
    place, as_buyer, infra, storage_session, monkeypatch
):
    import zlib

    from apps.orders.services import placing

    monkeypatch.setattr(placing, "PLACEMENT_WAIT", 0.2)
    product = ProductFactory(quantity=5)
    key = zlib.crc32(as_buyer.id.bytes) - 2**31
    with infra.engine("orders").connect() as other, other.begin():  # a long one
        other.execute(sa.select(sa.func.pg_advisory_xact_lock(0x0C42, key)))
        busy = place(as_buyer, (product, 1))
    assert busy.status_code == 409
    assert busy.json["type"] == "placement-in-progress"
    assert busy.headers["Retry-After"] == "1"
    assert stock_of(storage_session, product) == (5, 0, 0)
    assert place(as_buyer, (product, 1)).status_code == 201  # its turn came
