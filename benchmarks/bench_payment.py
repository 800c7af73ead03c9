"""Payments: starts per second, bank settlement -> PAID latency, poller throughput.

Starts a private PostgreSQL and a Tansu broker, the gateway, payment and the bank mock
(each under gunicorn, as in production, on free ports), the bank's worker (it sends
the signed callbacks) and payment workers (the callback consumer and the poller), as
`chomik run` wires them. Orders are written straight into the orders database as
placing leaves them (AWAITING_PAYMENT; placing itself is bench_orders.py's). Then:

1. payment starts: B concurrent buyers (and one, for the baseline) each start the
   payment of their own orders through the gateway, `POST /api/v1/orders/{id}/payment`
   (gateway -> payment -> the bank's `POST /transactions` -> one txcoord commit over
   payment's and orders' databases): starts per second, p50/p99;
2. settlement -> PAID under moderate load: a customer pays every started payment at
   the bank, R per second, while the bank drops a share of its callbacks (`--drop`);
   the time from the bank's settlement to the order's PAID row (p50/p99, for
   callbacks delivered and for callbacks dropped, which only the poller settles), and
   how many results the payment workers applied by callback and by poll (their
   metrics). Two worker replicas, the poller at the default PAYMENT_POLL_AFTER and
   PAYMENT_POLL_INTERVAL (30 s);
3. the poller: N payments paid at the bank with every callback dropped, left
   PENDING, then all made due at once: the time until every one is final, with 1 and
   with 2 worker replicas (the poller's job every second), i.e. payments checked at
   the bank and settled per second.
Run: .venv/bin/python benchmarks/bench_payment.py [--starts N] [--buyers B]
     [--rate R] [--drop P] [--polled N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import requests
import sqlalchemy as sa
from harness import (  # shared by the benchmarks
    Services,
    load,
    measure,
    percentile,
    register,
    start_services,
    start_worker,
    wait_ready,
)
from prometheus_client.parser import text_string_to_metric_families

from chomik.db import new_metadata
from chomik.infra import (
    KafkaBroker,
    PostgresCluster,
    free_port,
    private_cluster,
    stop_process,
)
from clients.orders import OrderStatus, define_order_tables

APPS = ("gateway", "payment", "bank")
ORDERS = define_order_tables(new_metadata()).orders
TOTAL = Decimal("99.90")


class Bench:
    """The running services, their databases and the payment workers."""

    def __init__(self, cluster: PostgresCluster, services: Services) -> None:
        self.cluster = cluster
        self.services = services
        self.urls = services.urls
        self.engines = {
            name: sa.create_engine(cluster.url(f"chomik_{name}"))
            for name in ("payment", "orders", "bank")
        }
        self.workers: list[tuple[subprocess.Popen[bytes], str]] = []

    def start_workers(self, replicas: int, **env: str) -> None:
        """Start `replicas` payment workers (with `env`); wait until they are ready."""
        base = self.services.app_env("payment", self.cluster)
        for n in range(replicas):
            port = free_port()
            label = f"payment-worker-{n + 1}"
            process = start_worker(
                "payment",
                {**base, **env, "METRICS_PORT": str(port),
                 "SCHEDULER_REPLICA_ID": label},
                self.services.base / f"{label}.log",
            )  # fmt: skip
            self.workers.append((process, f"http://127.0.0.1:{port}"))
        for process, url in self.workers:
            wait_ready(url, timeout=300, process=process)

    def stop_workers(self) -> None:
        for process, _ in self.workers:
            stop_process(process)
        self.workers.clear()

    def results(self) -> dict[str, float]:
        """Bank results the running workers applied, by source (callback, poll)."""
        counts: dict[str, float] = {}
        for _, url in self.workers:
            text = requests.get(f"{url}/metrics", timeout=10).text
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if (
                        sample.name == "payment_bank_results_total"
                        and sample.labels["outcome"] == "applied"
                    ):
                        source = sample.labels["source"]
                        counts[source] = counts.get(source, 0) + sample.value
        return counts

    def faults(self, **switches: float) -> None:
        requests.put(
            f"{self.urls['bank']}/api/v1/admin/faults", json=switches, timeout=10
        ).raise_for_status()

    def scalar(self, database: str, sql: str, **params: object) -> object:
        with self.engines[database].connect() as conn:
            return conn.scalar(sa.text(sql), params)

    def close(self) -> None:
        for engine in self.engines.values():
            engine.dispose()


def buyers(gateway: str, count: int) -> list[tuple[dict[str, str], uuid.UUID]]:
    """Registered buyers: (auth headers, user id)."""
    people = []
    for n in range(count):
        headers = {
            "Authorization": f"Bearer {register(gateway, f'p{n}@b.example', 'buyer')}"
        }
        me = requests.get(f"{gateway}/api/v1/auth/me", headers=headers, timeout=30)
        me.raise_for_status()
        people.append((headers, uuid.UUID(me.json()["id"])))
    return people


def place_orders(bench: Bench, buyer_id: uuid.UUID, count: int) -> list[uuid.UUID]:
    """`count` AWAITING_PAYMENT orders of a buyer, as placing leaves them."""
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    rows = [
        {"id": uuid.uuid4(), "buyer_id": buyer_id,
         "status": OrderStatus.AWAITING_PAYMENT, "address_id": uuid.uuid4(),
         "currency": "RUB", "total": TOTAL, "expires_at": expires}
        for _ in range(count)
    ]  # fmt: skip
    with bench.engines["orders"].begin() as conn:
        conn.execute(sa.insert(ORDERS), rows)
    return [row["id"] for row in rows]


def starter(
    bench: Bench,
    people: list[tuple[dict[str, str], uuid.UUID]],
    per_buyer: int,
    started: list[dict],
) -> Callable[[int, str], None]:
    """Thread i starts payments of buyer i's own orders through the gateway (each
    buyer has `per_buyer` orders: as many as all the starts, as one thread may be
    faster than the others)."""
    queues = [deque(place_orders(bench, buyer_id, per_buyer)) for _, buyer_id in people]
    sessions = [requests.Session() for _ in people]
    gateway = bench.urls["gateway"]

    def start(index: int, key: str) -> None:
        headers, _ = people[index]
        order_id = queues[index].popleft()
        response = sessions[index].post(
            f"{gateway}/api/v1/orders/{order_id}/payment", headers=headers, timeout=60
        )
        if response.status_code != 201:
            raise RuntimeError(f"{response.status_code} {response.text[:300]}")
        started.append(response.json())

    return start


def customer(bench: Bench) -> str:
    response = requests.post(
        f"{bench.urls['bank']}/api/v1/accounts",
        json={"owner": "bench customer", "balance": "100000000.00"},
        timeout=30,
    )
    response.raise_for_status()
    return str(response.json()["id"])


def pay_all(payments: list[dict], account: str, rate: float) -> None:
    """Pay each payment at the bank, at most `rate` per second and 16 at a time."""
    session = requests.Session()

    def pay(payment: dict) -> None:
        answer = session.post(
            payment["pay_url"], json={"account_id": account}, timeout=120
        )
        if answer.status_code != 200 or answer.json()["status"] != "SUCCEEDED":
            raise RuntimeError(f"{answer.status_code} {answer.text[:300]}")

    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=16) as pool:
        futures = []
        for n, payment in enumerate(payments):
            time.sleep(max(0.0, began + n / rate - time.monotonic()))
            futures.append(pool.submit(pay, payment))
        errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        raise SystemExit(f"{len(errors)} payments failed at the bank: {errors[0]!r}")


def wait_final(bench: Bench, ids: list[str], timeout: float) -> float:
    """Wait until none of the payments `ids` is PENDING; return the seconds waited."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        pending = bench.scalar(
            "payment",
            "SELECT count(*) FROM payments WHERE status = 'PENDING'"
            " AND id = ANY(CAST(:ids AS uuid[]))",
            ids=ids,
        )
        if pending == 0:
            return time.monotonic() - began
        time.sleep(0.05)
    raise SystemExit(f"payments still PENDING after {timeout:.0f}s")


def settlement_latencies(
    bench: Bench, payments: list[dict]
) -> tuple[list[float], list[float]]:
    """Seconds from the bank's settlement to the order's PAID row, for payments whose
    callback went out and for those whose callback the bank dropped."""
    ids = [p["id"] for p in payments]
    with bench.engines["bank"].connect() as conn:
        settled = dict(
            conn.execute(
                sa.text(
                    "SELECT reference, updated_at FROM transactions"
                    " WHERE reference = ANY(:ids)"
                ),
                {"ids": ids},
            ).all()
        )
        dropped = set(
            conn.scalars(
                sa.text(
                    "SELECT body->>'reference' FROM outgoing_callbacks"
                    " WHERE last_error = 'dropped (fault)'"
                    " AND body->>'reference' = ANY(:ids)"
                ),
                {"ids": ids},
            )
        )
    with bench.engines["orders"].connect() as conn:
        paid = dict(
            conn.execute(
                sa.text(
                    "SELECT CAST(order_id AS text), at FROM order_status_history"
                    " WHERE to_status = 'PAID'"
                    " AND order_id = ANY(CAST(:ids AS uuid[]))"
                ),
                {"ids": [p["order_id"] for p in payments]},
            ).all()
        )
    delivered: list[float] = []
    lost: list[float] = []
    for payment in payments:
        seconds = (paid[payment["order_id"]] - settled[payment["id"]]).total_seconds()
        (lost if payment["id"] in dropped else delivered).append(seconds)
    return delivered, lost


def latency_row(name: str, values: list[float]) -> None:
    if len(values) < 2:
        print(f"  {name:<34} {len(values):>5}")
        return
    print(
        f"  {name:<34} {len(values):>5} {percentile(values, 50) * 1000:>9.0f}"
        f" {percentile(values, 99) * 1000:>9.0f}"
    )


def start_paid_pending(
    bench: Bench, people: list[tuple[dict[str, str], uuid.UUID]], count: int
) -> list[str]:
    """`count` payments started and paid at the bank, whose callbacks are dropped."""
    started: list[dict] = []
    load(starter(bench, people, count, started), count, len(people))
    pay_all(started, customer(bench), rate=50)
    return [p["id"] for p in started]


def due(bench: Bench, ids: list[str], when: str) -> None:
    """Make the payments `ids` due for the poller at `when` (an SQL expression)."""
    with bench.engines["payment"].begin() as conn:
        conn.execute(
            sa.text(
                f"UPDATE payments SET next_check_at = {when}"
                " WHERE id = ANY(CAST(:ids AS uuid[]))"
            ),
            {"ids": ids},
        )


def poller_throughput(
    bench: Bench, people: list[tuple[dict[str, str], uuid.UUID]], count: int
) -> None:
    print(f"poller: {count} PENDING payments paid at the bank, callbacks dropped,"
          " all due at once")  # fmt: skip
    print(f"  {'replicas':<10} {'seconds':>9} {'checked/s':>10}")
    bench.faults(drop=1.0)
    for replicas in (1, 2):
        bench.stop_workers()
        ids = start_paid_pending(bench, people, count)
        due(bench, ids, "now() + interval '1 day'")  # none before the clock starts
        bench.start_workers(
            replicas, PAYMENT_POLL_INTERVAL="3", PAYMENT_POLL_AFTER="3600"
        )
        before = bench.results().get("poll", 0)
        due(bench, ids, "now()")
        seconds = wait_final(bench, ids, timeout=600)
        applied = bench.results().get("poll", 0) - before
        print(
            f"  {replicas:<10} {seconds:>9.2f} {len(ids) / seconds:>10.1f}"
            f"  (applied by poll: {applied:.0f} of {len(ids)})"
        )
    bench.faults(drop=0.0)


def run(
    cluster: PostgresCluster,
    broker: KafkaBroker,
    processes: list[subprocess.Popen[bytes]],
    args: argparse.Namespace,
) -> int:
    def env(urls: dict[str, str]) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "ORDERS_DATABASE_URL": cluster.url("chomik_orders"),
            "TXCOORD_DATABASE_URL": cluster.url("chomik_txcoord"),
            "BANK_CALLBACK_URL": f"{urls['gateway']}/api/v1/callbacks/bank",
            "BANK_PUBLIC_URL": urls["bank"],
            "ACCESS_TOKEN_TTL": "7200",  # the buyers' tokens last the whole run
        }

    services = start_services(
        cluster, processes, APPS, databases=("orders", "txcoord"), env=env
    )
    bench = Bench(cluster, services)
    bank_env = services.app_env("bank", cluster)
    processes.append(start_worker("bank", bank_env, services.base / "bank-worker.log"))
    try:
        return measure_all(bench, args)
    finally:
        bench.stop_workers()
        bench.close()


def measure_all(bench: Bench, args: argparse.Namespace) -> int:
    bench.start_workers(2)
    people = buyers(bench.urls["gateway"], args.buyers)
    started: list[dict] = []
    load(starter(bench, people[:1], 20, started), 20, 1)  # warm pools
    print(
        f"payment starts through the gateway (POST /orders/{{id}}/payment), "
        f"gunicorn {os.environ.get('WEB_CONCURRENCY', '2')} workers per service"
    )
    print(f"{'buyers':<22} {'starts':>6} {'p50 ms':>9} {'p99 ms':>9} {'starts/s':>9}")
    for concurrency in (1, args.buyers):
        total = args.starts if concurrency > 1 else args.starts // 4
        measure(
            f"{concurrency} buyer{'s' if concurrency > 1 else ''}",
            lambda c=concurrency, n=total: load(
                starter(bench, people[:c], n, started), n, c
            ),
        )

    print(
        f"\nsettlement at the bank -> order PAID: {len(started)} payments paid at "
        f"{args.rate:.0f}/s, {args.drop:.0%} of callbacks dropped, 2 worker replicas"
    )
    bench.faults(drop=args.drop)
    before = bench.results()
    pay_all(started, customer(bench), args.rate)
    wait_final(bench, [p["id"] for p in started], timeout=180)
    after = bench.results()
    bench.faults(drop=0.0)
    delivered, lost = settlement_latencies(bench, started)
    print(f"  {'':<34} {'count':>5} {'p50 ms':>9} {'p99 ms':>9}")
    latency_row("all", delivered + lost)
    latency_row("callback sent", delivered)
    latency_row("callback dropped (poller only)", lost)
    by = {s: after.get(s, 0) - before.get(s, 0) for s in ("callback", "poll")}
    print(
        f"  applied by callback {by['callback']:.0f} "
        f"({by['callback'] / max(1, sum(by.values())):.1%}), "
        f"by poll {by['poll']:.0f} ({by['poll'] / max(1, sum(by.values())):.1%})\n"
    )
    poller_throughput(bench, people, args.polled)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=400)
    parser.add_argument("--buyers", type=int, default=8)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--drop", type=float, default=0.1)
    parser.add_argument("--polled", type=int, default=300)
    args = parser.parse_args()
    processes: list[subprocess.Popen[bytes]] = []
    with (
        # durable: txcoord refuses a log database that may lose a commit
        private_cluster("chomik-bench-payment-") as cluster,
        KafkaBroker(
            port=free_port(), log_path=Path(cluster.base_dir.parent) / "tansu.log"
        ) as broker,
    ):
        try:
            return run(cluster, broker, processes, args)
        finally:
            for process in processes:
                stop_process(process)


if __name__ == "__main__":
    sys.exit(main())
