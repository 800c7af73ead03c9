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
import os
import random
import subprocess
import sys
from collections.abc import Callable

import requests
from harness import (
    Buyer,
    directly,
    load,
    measure,
    seed,
    start_services,
)

from chomik.db import make_engine, make_session_factory
from chomik.infra import PostgresCluster, private_cluster, stop_process

APPS = ("storage", "delivery", "orders", "gateway")
CONCURRENCY = (1, 8, 32)


def through_gateway(
    gateway: str, product_ids: list[str], people: list[Buyer]
) -> Callable[[int, str], None]:
    sessions = [requests.Session() for _ in people]

    def place(index: int, key: str) -> None:
        buyer = people[index % len(people)]
        response = sessions[index % len(people)].post(
            f"{gateway}/api/v1/orders",
            headers={**buyer.headers, "Idempotency-Key": key},
            json={
                "items": [{"product_id": random.choice(product_ids), "quantity": 1}],
                "address_id": buyer.address_id,
            },
            timeout=60,
        )
        if response.status_code != 201:
            raise RuntimeError(f"{response.status_code} {response.text[:300]}")

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
