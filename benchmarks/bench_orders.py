"""Placing orders: POST /orders through the gateway vs the same SQL work done directly.

Starts a private PostgreSQL and storage, delivery, orders and the gateway (each under
gunicorn, as in production, on free ports); registers a seller with products and
buyers with an address each, through the gateway. Then, at 1, 8 and 32 concurrent
buyers ordering one unit of a random product out of many (spread products, so
buyers rarely wait for each other's row locks), it measures orders per second and
p50/p99 latency of `POST /orders` (gateway -> orders -> storage and delivery), and,
in the same run, of the baseline: the same SQL work done directly in this process
(the reservation in storage's database, the order, its line, history, outbox and
idempotency rows in orders' database; no HTTP).
Run: .venv/bin/python benchmarks/bench_orders.py [--orders N] [--products P]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import subprocess
import sys
import uuid
from collections.abc import Callable
from decimal import Decimal

import requests
import sqlalchemy as sa
from harness import load, measure, register, start_services  # shared by the benchmarks
from sqlalchemy.orm import Session, sessionmaker

from apps.orders.models import Order, OrderItem, OrderStatusChange, PlacementAttempt
from apps.storage import services as stock
from chomik.db import make_engine, make_session_factory, utcnow
from chomik.infra import PostgresCluster, private_cluster, stop_process
from chomik.messaging.outbox import emit
from clients.events import OrderItem as EventItem
from clients.events import OrderPlaced
from clients.orders import OrderStatus

APPS = ("storage", "delivery", "orders", "gateway")
CONCURRENCY = (1, 8, 32)
ADDRESS = {
    "recipient": "Bench Buyer", "phone": "+79990000000", "country": "RU",
    "city": "Moscow", "street": "Tverskaya 1", "postal_code": "125009",
}  # fmt: skip


def seed(gateway: str, products: int, buyers: int) -> tuple[list[str], list[tuple]]:
    """A seller's products and buyers with an address: (product ids, buyers)."""
    seller = {"Authorization": f"Bearer {register(gateway, 's@b.example', 'seller')}"}
    product_ids = []
    for n in range(products):
        response = requests.post(
            f"{gateway}/api/v1/products", headers=seller,
            json={
                "title": f"Sneaker {n}", "brand": "Chomik", "model": f"M{n}",
                "size": "42", "color": "white", "condition": "new",
                "price": "99.90", "currency": "RUB", "quantity": 1_000_000,
            },
            timeout=30,
        )  # fmt: skip
        response.raise_for_status()
        product_ids.append(response.json()["id"])
    people = []
    for n in range(buyers):
        token = register(gateway, f"b{n}@b.example", "buyer")
        headers = {"Authorization": f"Bearer {token}"}
        response = requests.post(
            f"{gateway}/api/v1/addresses", headers=headers, json=ADDRESS, timeout=30
        )
        response.raise_for_status()
        people.append((headers, response.json()["id"]))
    return product_ids, people


def through_gateway(
    gateway: str, product_ids: list[str], people: list[tuple]
) -> Callable[[int, str], None]:
    sessions = [requests.Session() for _ in people]

    def place(index: int, key: str) -> None:
        headers, address = people[index % len(people)]
        response = sessions[index % len(people)].post(
            f"{gateway}/api/v1/orders",
            headers={**headers, "Idempotency-Key": key},
            json={
                "items": [{"product_id": random.choice(product_ids), "quantity": 1}],
                "address_id": address,
            },
            timeout=60,
        )
        if response.status_code != 201:
            raise RuntimeError(f"{response.status_code} {response.text[:300]}")

    return place


def directly(
    storage: sessionmaker[Session],
    orders: sessionmaker[Session],
    product_ids: list[str],
) -> Callable[[int, str], None]:
    """The SQL a placement does, without HTTP: what the services cost at the least."""
    keys = sa.table(
        "idempotency_keys", sa.column("scope"), sa.column("key"),
        sa.column("fingerprint"), sa.column("expires_at"),
        sa.column("response_status"),
    )  # fmt: skip

    def place(index: int, key: str) -> None:
        order_id, buyer = uuid.uuid4(), uuid.uuid4()
        product = uuid.UUID(random.choice(product_ids))
        with storage.begin() as session:
            held = stock.reserve_stock(
                session, order_id=order_id, lines=[stock.StockLine(product, 1)]
            ).reservation.items[0]
        with orders.begin() as session:
            session.add(PlacementAttempt(order_id=order_id, buyer_id=buyer,
                                         next_check_at=utcnow()))  # fmt: skip
        with orders.begin() as session:
            session.execute(
                sa.insert(keys).values(scope=f"orders.place {buyer}", key=key,
                                       fingerprint="x" * 64, expires_at=utcnow())
            )  # fmt: skip
            expires = utcnow() + dt.timedelta(minutes=15)
            session.add(
                Order(
                    id=order_id, buyer_id=buyer, status=OrderStatus.AWAITING_PAYMENT,
                    address_id=uuid.uuid4(), currency="RUB", total=held.unit_price,
                    expires_at=expires, next_check_at=expires,
                    items=[OrderItem(product_id=product, seller_id=uuid.uuid4(),
                                     title=held.title, quantity=1,
                                     unit_price=held.unit_price)],
                )
            )  # fmt: skip
            session.add(OrderStatusChange(order_id=order_id,
                                          to_status=OrderStatus.AWAITING_PAYMENT))  # fmt: skip
            session.execute(
                sa.delete(PlacementAttempt).where(PlacementAttempt.order_id == order_id)
            )
            session.flush()
            emit(session, OrderPlaced(
                order_id=str(order_id), buyer_id=str(buyer), address_id="a",
                currency="RUB", total=Decimal(held.unit_price),
                items=(EventItem(str(product), 1),),
            ))  # fmt: skip
            session.execute(
                sa.update(keys).where(keys.c.key == key).values(response_status=201)
            )

    return place


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=400)
    parser.add_argument("--products", type=int, default=200)
    args = parser.parse_args()
    processes: list[subprocess.Popen[bytes]] = []
    with private_cluster("chomik-bench-orders-", durable=False) as cluster:
        try:
            return run(cluster, processes, args)
        finally:
            for process in processes:
                stop_process(process)


def run(
    cluster: PostgresCluster,
    processes: list[subprocess.Popen[bytes]],
    args: argparse.Namespace,
) -> int:
    urls = start_services(cluster, processes, APPS).urls
    product_ids, people = seed(urls["gateway"], args.products, max(CONCURRENCY))
    storage = make_session_factory(make_engine(cluster.url("chomik_storage")))
    orders = make_session_factory(make_engine(cluster.url("chomik_orders")))
    gateway = through_gateway(urls["gateway"], product_ids, people)
    baseline = directly(storage, orders, product_ids)
    load(gateway, 50, 4)  # warm pools and workers
    load(baseline, 50, 4)
    print(
        f"POST /orders, one unit of one of {len(product_ids)} products, "
        f"gunicorn {os.environ.get('WEB_CONCURRENCY', '2')} workers per service"
    )
    print(f"{'target':<28} {'orders':>6} {'p50 ms':>9} {'p99 ms':>9} {'orders/s':>9}")
    for concurrency in CONCURRENCY:
        total = args.orders if concurrency > 1 else args.orders // 4
        direct = measure(
            f"direct SQL, {concurrency} buyers",
            lambda c=concurrency, n=total: load(baseline, n, c),
        )
        full = measure(
            f"gateway, {concurrency} buyers",
            lambda c=concurrency, n=total: load(gateway, n, c),
        )
        print(
            f"  ratio gateway/direct at {concurrency}: "
            f"p50 x{full['p50'] / direct['p50']:.2f}, "
            f"throughput x{full['rps'] / direct['rps']:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
