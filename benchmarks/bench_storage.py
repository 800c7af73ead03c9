"""Stock reservations per second and p99 latency: the service against the bare SQL floor.

Starts a private PostgreSQL (`chomik.infra.PostgresCluster`), migrates `storage`, and
runs, for one hot product and for 1,000 spread products, at 1, 8 and 32 concurrent
clients (threads, one connection each):

- service: `apps.storage.services.reserve_stock` for one unit under a new order id,
  one transaction per reservation (what POST /internal/reservations runs);
- floor: the bare conditional UPDATE (`quantity - reserved >= 1`), one transaction
  per statement, run the same way.

Then it grows the catalog to 100,000 products and times the filtered list
(`list_products`, the query behind GET /products: page + total) for a few filters.

Usage: `python benchmarks/bench_storage.py [--seconds 3]`.
"""

from __future__ import annotations

import argparse
import random
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from apps.storage import services
from apps.storage.models import Product, ProductCondition
from apps.storage.services import ProductFilters, StockLine
from chomik import migrating
from chomik.infra import private_cluster

CLIENTS = (1, 8, 32)
SPREAD = 1_000
STOCK = 1_000_000_000

FLOOR_SQL = sa.text(
    "UPDATE products SET reserved = reserved + 1 "
    "WHERE id = :id AND archived_at IS NULL AND quantity - reserved >= 1"
)

Op = Callable[[sa.Connection, Session, uuid.UUID], None]


def service_op(conn: sa.Connection, session: Session, product_id: uuid.UUID) -> None:
    services.reserve_stock(
        session, order_id=uuid.uuid4(), lines=[StockLine(product_id, 1)]
    )
    session.commit()


def floor_op(conn: sa.Connection, session: Session, product_id: uuid.UUID) -> None:
    if conn.execute(FLOOR_SQL, {"id": product_id}).rowcount != 1:
        raise RuntimeError("floor update matched no row")
    conn.commit()


def seed(engine: sa.Engine) -> tuple[uuid.UUID, list[uuid.UUID]]:
    with Session(engine) as session:
        products = [
            Product(
                seller_id=uuid.uuid4(),
                title=f"Bench {n}",
                brand="Nike",
                model=f"M{n}",
                size="42",
                color="white",
                condition=ProductCondition.NEW,
                price=100,
                currency="RUB",
                quantity=STOCK,
            )  # fmt: skip
            for n in range(SPREAD + 1)
        ]
        session.add_all(products)
        session.commit()
        ids = [p.id for p in products]
    return ids[0], ids[1:]


def run(
    engine: sa.Engine, op: Op, pick: Callable[[random.Random], uuid.UUID],
    clients: int, seconds: float,
) -> tuple[float, float]:  # fmt: skip
    """Run `op` from `clients` threads for `seconds`; return (ops/s, p99 ms)."""
    barrier = threading.Barrier(clients + 1)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    state = {"deadline": 0.0, "warm": 0.0}

    def worker(index: int) -> None:
        rng = random.Random(index)
        with engine.connect() as conn, Session(bind=conn) as session:
            barrier.wait()
            while (now := time.perf_counter()) < state["deadline"]:
                op(conn, session, pick(rng))
                if now >= state["warm"]:
                    latencies[index].append(time.perf_counter() - now)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    start = time.perf_counter()
    state["warm"] = start + min(0.5, seconds / 4)
    state["deadline"] = state["warm"] + seconds
    barrier.wait()
    for thread in threads:
        thread.join()
    flat = sorted(x for per in latencies for x in per)
    p99 = statistics.quantiles(flat, n=100)[98] if len(flat) >= 100 else flat[-1]
    return len(flat) / seconds, p99 * 1000


CATALOG = 100_000
LISTS: dict[str, ProductFilters] = {
    "no filter, newest first": ProductFilters(),
    "q=air max": ProductFilters(q="air max"),
    "q=jordan, sort=price": ProductFilters(q="jordan", sort="price"),
    "brand+size+color": ProductFilters(brand="Adidas", size="42", color="black"),
    "price 100..120, -price": ProductFilters(
        min_price=Decimal(100), max_price=Decimal(120), sort="-price"
    ),
    "seller_id": ProductFilters(seller_id=uuid.UUID(int=7)),
    "condition=used, page 50": ProductFilters(condition=ProductCondition.USED, page=50),
}

# Independent, evenly spread attributes (random with a fixed seed).
GROW_SQL = sa.text(
    """
    WITH rows AS (
        SELECT n, floor(random() * 6)::int AS kind, floor(random() * 12)::int AS size,
               floor(random() * 5)::int AS color, random() AS r
        FROM generate_series(1, :count) AS n
    )
    INSERT INTO products (id, seller_id, title, brand, model, size, color, condition,
                          price, currency, quantity)
    SELECT gen_random_uuid(),
           ('00000000-0000-0000-0000-' || lpad((n % 500)::text, 12, '0'))::uuid,
           (ARRAY['Air Max', 'Jordan', 'Samba', 'Gazelle', '990', 'Dunk'])[kind + 1]
               || ' ' || n,
           (ARRAY['Nike', 'Nike', 'Adidas', 'Adidas', 'New Balance', 'Nike'])[kind + 1],
           'Model ' || (n % 97),
           (36 + size)::text,
           (ARRAY['white', 'black', 'red', 'grey', 'blue'])[color + 1],
           CASE WHEN r < 0.25 THEN 'used' ELSE 'new' END,
           round((10 + r * 490)::numeric, 2),
           'RUB',
           1 + n % 20
    FROM rows
    """
)


def time_lists(engine: sa.Engine) -> None:
    """Grow the catalog, then print the median time of each filtered list."""
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT setseed(0.42)"))
        conn.execute(GROW_SQL, {"count": CATALOG})
        conn.execute(sa.text("ANALYZE products"))
    print(
        f"\nGET /products over {CATALOG:,} products (list_products: page of 20 + total)"
    )
    print(f"{'filter':<28} {'median ms':>9} {'total':>7}")
    with Session(engine) as session:
        for name, filters in LISTS.items():
            runs = []
            for _ in range(7):
                start = time.perf_counter()
                page = services.list_products(session, filters=filters)
                runs.append(time.perf_counter() - start)
            print(f"{name:<28} {statistics.median(runs) * 1000:>9.2f} {page.total:>7}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    args = parser.parse_args()

    with private_cluster("chomik-bench-storage-") as cluster:
        cluster.create_databases(["chomik_storage"])
        url = cluster.url("chomik_storage")
        migrating.upgrade("storage", url)
        engine = sa.create_engine(url, pool_size=max(CLIENTS) + 2, max_overflow=0)
        hot, spread = seed(engine)
        print(f"PostgreSQL {engine.dialect.server_version_info}, durable (fsync on), "
              f"{args.seconds:g} s per measurement, one connection per client")  # fmt: skip
        print(f"{'workload':<8} {'clients':>7} {'service/s':>10} {'p99 ms':>8} "
              f"{'floor/s':>9} {'p99 ms':>8} {'ratio':>6}")  # fmt: skip
        workloads: dict[str, Callable[[random.Random], uuid.UUID]] = {
            "hot": lambda rng: hot,
            "spread": lambda rng: rng.choice(spread),
        }
        for name, pick in workloads.items():
            for clients in CLIENTS:
                svc, svc_p99 = run(engine, service_op, pick, clients, args.seconds)
                flo, flo_p99 = run(engine, floor_op, pick, clients, args.seconds)
                print(f"{name:<8} {clients:>7} {svc:>10.0f} {svc_p99:>8.2f} "
                      f"{flo:>9.0f} {flo_p99:>8.2f} {svc / flo:>6.2f}")  # fmt: skip
        print(
            "ratio = service throughput / floor throughput (1.00 = as fast as bare SQL)"
        )
        time_lists(engine)
        engine.dispose()


if __name__ == "__main__":
    main()
