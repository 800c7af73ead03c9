"""GET /products: every filter, sort and page returns exactly the right products."""

import datetime as dt
import uuid
from decimal import Decimal

import pytest
import sqlalchemy as sa

from apps.storage.models import ProductCondition
from tests.factories.storage import ProductFactory

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def ids(response):
    assert response.status_code == 200, response.json
    return [item["id"] for item in response.json["items"]]


@pytest.fixture
def catalog():
    """Seven products, each distinguishable by some filter."""
    seller = uuid.uuid4()
    made = {
        "air_max": ProductFactory(
            title="Air Max 90 Infrared",
            brand="Nike",
            model="Air Max 90",
            size="42",
            color="white",
            price=Decimal("129.90"),
            seller_id=seller,
        ),
        "jordan": ProductFactory(
            title="Jordan 1 Chicago",
            brand="Nike",
            model="Air Jordan 1",
            size="43",
            color="red",
            price=Decimal("450.00"),
        ),
        "samba": ProductFactory(
            title="Samba OG",
            brand="Adidas",
            model="Samba",
            size="42",
            color="white",
            price=Decimal("99.99"),
            condition=ProductCondition.USED,
        ),
        "gazelle": ProductFactory(
            title="Gazelle Indoor",
            brand="Adidas",
            model="Gazelle",
            size="44",
            color="blue",
            price=Decimal("100.00"),
            seller_id=seller,
        ),
        "990": ProductFactory(
            title="990v6 Grey",
            brand="New Balance",
            model="990v6",
            size="42",
            color="grey",
            price=Decimal("200.00"),
        ),
        "percent": ProductFactory(
            title="Promo 100% cotton laces",
            brand="Vans",
            model="Old_Skool",
            size="40",
            color="black",
            price=Decimal("100.01"),
        ),
        "archived": ProductFactory(
            title="Air Force 1",
            brand="Nike",
            model="AF1",
            size="42",
            color="white",
            price=Decimal("110.00"),
            archived_at=T0,
        ),
    }
    for offset, product in enumerate(made.values()):
        product.created_at = T0 + dt.timedelta(minutes=offset)
    ProductFactory._meta.sqlalchemy_session.flush()
    return {name: str(p.id) for name, p in made.items()}, seller


def names(catalog, got):
    by_id = {v: k for k, v in catalog[0].items()}
    return [by_id[i] for i in got]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", {"air_max", "jordan", "samba", "gazelle", "990", "percent"}),
        ("q=air", {"air_max", "jordan"}),
        ("q=AIR%20max", {"air_max"}),
        ("q=nike%20chicago", {"jordan"}),
        ("q=balance", {"990"}),
        ("q=100%25", {"percent"}),
        ("q=%25", {"percent"}),
        ("q=old_s", {"percent"}),
        ("q=air_max", set()),
        ("q=zzz", set()),
        ("brand=Adidas", {"samba", "gazelle"}),
        ("brand=adidas", set()),
        ("size=42", {"air_max", "samba", "990"}),
        ("color=white", {"air_max", "samba"}),
        ("condition=used", {"samba"}),
        ("condition=new", {"air_max", "jordan", "gazelle", "990", "percent"}),
        ("min_price=100.00", {"air_max", "jordan", "gazelle", "990", "percent"}),
        ("max_price=100", {"samba", "gazelle"}),
        ("min_price=100&max_price=100.01", {"gazelle", "percent"}),
        ("min_price=10&max_price=5", set()),  # an empty range matches nothing
        ("brand=Nike&size=42&color=white", {"air_max"}),
    ],
)
def test_filters_select_exactly_the_matching_products(client, catalog, query, expected):
    got = ids(client.get(f"/api/v1/products?{query}&page_size=100"))
    assert set(names(catalog, got)) == expected


def test_seller_filter(client, catalog):
    _, seller = catalog
    got = ids(client.get(f"/api/v1/products?seller_id={seller}"))
    assert set(names(catalog, got)) == {"air_max", "gazelle"}


def test_the_id_filter_selects_those_listed_products(client, catalog):
    made, _ = catalog
    wanted = [made["samba"], made["archived"], made["jordan"], str(uuid.uuid4())]
    got = ids(client.get("/api/v1/products?" + "&".join(f"id={i}" for i in wanted)))
    assert set(names(catalog, got)) == {"samba", "jordan"}  # never the archived
    got = ids(client.get(f"/api/v1/products?id={made['samba']}&brand=Nike"))
    assert got == []  # with the other filters


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("price", ["samba", "gazelle", "percent", "air_max", "990", "jordan"]),
        ("-price", ["jordan", "990", "air_max", "percent", "gazelle", "samba"]),
        ("created_at", ["air_max", "jordan", "samba", "gazelle", "990", "percent"]),
        ("-created_at", ["percent", "990", "gazelle", "samba", "jordan", "air_max"]),
    ],
)
def test_sort_orders_the_products(client, catalog, sort, expected):
    assert names(catalog, ids(client.get(f"/api/v1/products?sort={sort}"))) == expected


def test_default_sort_is_newest_first(client, catalog):
    got = names(catalog, ids(client.get("/api/v1/products")))
    assert got == ["percent", "990", "gazelle", "samba", "jordan", "air_max"]


def test_pages_cover_the_list_once_in_order(client, session):
    for n in range(23):
        ProductFactory(price=Decimal(n) + Decimal("0.50"))
    seen = []
    for page in (1, 2, 3):
        body = client.get(f"/api/v1/products?sort=price&page={page}&page_size=10").json
        assert (body["page"], body["page_size"], body["total"]) == (page, 10, 23)
        seen += [item["price"] for item in body["items"]]
    assert seen == [f"{n}.50" for n in range(23)]
    empty = client.get("/api/v1/products?page=4&page_size=10").json
    assert empty["items"] == []
    assert empty["total"] == 23


def test_total_counts_the_filtered_list_not_the_page(client, catalog):
    body = client.get("/api/v1/products?size=42&page_size=1").json
    assert body["total"] == 3
    assert len(body["items"]) == 1


def test_available_is_quantity_less_reserved(client):
    product = ProductFactory(quantity=7, reserved=3)
    assert client.get(f"/api/v1/products/{product.id}").json["available"] == 4
    assert client.get("/api/v1/products").json["items"][0]["available"] == 4


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("page_size=1000", "page_size"),
        ("page_size=0", "page_size"),
        ("page=0", "page"),
        ("page=99999999999999999999", "page"),
        ("sort=title", "sort"),
        ("sort=reserved", "sort"),
        ("condition=mint", "condition"),
        ("min_price=1.001", "min_price"),
        ("max_price=-5", "max_price"),
        ("seller_id=42", "seller_id"),
        ("id=42", "id.0"),
        ("id=", "id.0"),
        ("&".join(f"id={uuid.uuid4()}" for _ in range(101)), "id"),
    ],
)
def test_bad_list_arguments_are_a_validation_problem(client, query, field):
    response = client.get(f"/api/v1/products?{query}")
    assert response.status_code == 422
    assert response.content_type == "application/problem+json"
    assert field in response.json["errors"]


def test_search_uses_the_search_index(session):
    """The `q` expression is exactly the indexed one, so the planner can use it."""
    from apps.storage.models import Product
    from apps.storage.services.catalog import ProductFilters, _criteria

    query = sa.select(Product.id).where(*_criteria(ProductFilters(q="air max")))
    session.execute(sa.text("SET LOCAL enable_seqscan = off"))
    compiled = query.compile(
        dialect=session.bind.dialect, compile_kwargs={"literal_binds": True}
    )
    plan = session.execute(sa.text(f"EXPLAIN {compiled}")).scalars().all()
    assert any("ix_products_search" in line for line in plan), plan


def test_a_repeated_search_word_counts_once():
    from apps.storage.services.catalog import (
        MAX_SEARCH_WORDS,
        ProductFilters,
        _criteria,
    )

    # Repeats neither cost a LIKE each nor push a later word past the limit.
    q = "air " + "a " * MAX_SEARCH_WORDS + "zzzz"
    once = list(_criteria(ProductFilters(q="air a zzzz")))
    assert len(list(_criteria(ProductFilters(q=q)))) == len(once)
