"""Gateway overhead: an authenticated GET through the gateway vs straight to storage.

Starts a private PostgreSQL, the storage service and the gateway (each under
gunicorn, as in production, on free ports), logs a buyer in through the gateway,
then sends the same GET /api/v1/products with the same concurrency three ways:
straight to storage, through the gateway, and through `bare_proxy.py`, the floor of
the gateway's stack (Flask and urllib3 under the same gunicorn settings, forwarding
and nothing else). The requests go in rounds, every target in turn and each round
starting with the next one, so a drift of the machine weighs on all three alike. It
prints p50/p99 latency, throughput, the ratios, and the CPU milliseconds each
process (its gunicorn master and workers, from /proc) spent per request: the
gateway's is the floor's plus what the gateway adds (token and deny-list checks,
request ids, metrics, headers). Then what the deny-list check of one request costs,
asking the database each time and from the list kept in memory
(`apps.gateway.revocations`).
Run: .venv/bin/python benchmarks/bench_gateway.py [--requests N] [--concurrency C]
     [--rounds R]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import requests
from harness import (
    PASSWORD,
    cpu_by_label,
    cpu_delta,
    format_cpu,
    row,
    spawn,
    start_services,
    wait_ready,
)

from apps.gateway.revocations import Revocations
from chomik.cli import GUNICORN_CONF
from chomik.db import make_engine
from chomik.infra import PostgresCluster, free_port, private_cluster, stop_process


def seed(gateway: str) -> str:
    """Register a seller with 20 products and a buyer; return the buyer's token."""
    for email, role in (
        ("seller@bench.example", "seller"),
        ("buyer@bench.example", "buyer"),
    ):
        requests.post(
            f"{gateway}/api/v1/auth/register",
            json={"email": email, "password": PASSWORD, "name": role, "role": role},
            timeout=10,
        ).raise_for_status()
    tokens = {}
    for email in ("seller@bench.example", "buyer@bench.example"):
        response = requests.post(
            f"{gateway}/api/v1/auth/login",
            json={"email": email, "password": PASSWORD},
            timeout=10,
        )
        response.raise_for_status()
        tokens[email] = response.json()["access_token"]
    seller = {"Authorization": f"Bearer {tokens['seller@bench.example']}"}
    for n in range(20):
        requests.post(
            f"{gateway}/api/v1/products",
            headers=seller,
            json={
                "title": f"Sneaker {n}", "brand": "Chomik", "model": f"M{n}",
                "size": "42", "color": "white", "condition": "new",
                "price": "99.90", "currency": "RUB", "quantity": 5,
            },
            timeout=10,
        ).raise_for_status()  # fmt: skip
    return tokens["buyer@bench.example"]


def load(
    url: str, token: str, total: int, concurrency: int
) -> tuple[list[float], float]:
    """Send `total` GETs from `concurrency` threads; return latencies and wall time."""
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(total))
    errors: list[str] = []

    def worker() -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        mine = []
        while True:
            with lock:
                if next(counter, None) is None:
                    break
            start = time.perf_counter()
            response = session.get(url, timeout=30)
            mine.append(time.perf_counter() - start)
            if response.status_code != 200:
                errors.append(f"{response.status_code} {response.text[:200]}")
        session.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise SystemExit(f"{len(errors)} failed requests, first: {errors[0]}")
    return latencies, elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if not 0 < args.rounds <= args.requests:
        parser.error("--rounds must be between 1 and --requests")

    processes: list[subprocess.Popen[bytes]] = []
    with private_cluster("chomik-bench-gateway-", durable=False) as cluster:
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
    """Start storage, the gateway and the floor on the cluster, then measure them."""
    services = start_services(
        cluster, processes, ("storage", "gateway"), env={"ACCESS_TOKEN_TTL": "7200"}
    )
    groups = {"storage": processes[0].pid, "gateway": processes[1].pid}
    storage, gateway = services.urls["storage"], services.urls["gateway"]
    floor = start_floor(storage, services.base, processes)
    groups["floor"] = processes[-1].pid
    token = seed(gateway)
    path = "/api/v1/products?page_size=20"
    for target in (storage, gateway, floor):  # warm pools, caches and workers
        load(f"{target}{path}", token, 300, args.concurrency)

    print(
        f"GET {path} with a bearer token, {args.concurrency} concurrent clients, "
        f"gunicorn {os.environ.get('WEB_CONCURRENCY', '2')} workers each; "
        f"{args.rounds} rounds, every target in turn, each round starting one later"
    )
    print(f"{'target':<22} {'reqs':>6} {'p50 ms':>9} {'p99 ms':>9} {'req/s':>9}")
    targets = {
        "storage (direct)": storage,
        "gateway -> storage": gateway,
        "floor -> storage": floor,
    }
    names = list(targets)
    latencies: dict[str, list[float]] = {name: [] for name in names}
    elapsed = dict.fromkeys(names, 0.0)
    cpu = {name: Counter[str]() for name in names}
    for n in range(args.rounds):
        # The requests left over by the division go in the first round.
        count = args.requests // args.rounds + (
            args.requests % args.rounds if n == 0 else 0
        )
        for name in names[n % 3 :] + names[: n % 3]:
            before = cpu_by_label(groups, {})
            spent, wall = load(f"{targets[name]}{path}", token, count, args.concurrency)
            cpu[name].update(cpu_delta(cpu_by_label(groups, {}), before))
            latencies[name] += spent
            elapsed[name] += wall
    rows, per_request = {}, {}
    for name in names:
        rows[name] = row(name, latencies[name], elapsed[name])
        per_request[name] = {k: v / len(latencies[name]) for k, v in cpu[name].items()}
        print(f"{'':>22} CPU ms/request: {format_cpu(per_request[name], groups)}")
    direct = rows["storage (direct)"]
    for name in ("gateway -> storage", "floor -> storage"):
        proxied = rows[name]
        print(
            f"ratio {name.split()[0]}/direct: p50 x{proxied['p50'] / direct['p50']:.2f}, "
            f"p99 x{proxied['p99'] / direct['p99']:.2f}, "
            f"throughput x{proxied['rps'] / direct['rps']:.2f}"
        )
    over = per_request["gateway -> storage"]["gateway"] * 1000
    under = per_request["floor -> storage"]["floor"] * 1000
    print(
        f"gateway CPU over the floor: +{over - under:.2f} ms/request, x{over / under:.2f}"
    )
    deny_checks(cluster.url("chomik_gateway"), token, args.requests)
    return 0


def start_floor(
    storage: str, base: Path, processes: list[subprocess.Popen[bytes]]
) -> str:
    """Serve `bare_proxy.py` to storage under the gateway's gunicorn settings."""
    port = free_port()
    (base / "prom-floor").mkdir()
    argv = [
        "-c", str(GUNICORN_CONF), "--bind", f"127.0.0.1:{port}",
        "--name", "chomik-bench-floor", "--chdir", str(Path(__file__).resolve().parent),
        "bare_proxy:app",
    ]  # fmt: skip
    env = {
        **os.environ,
        "UPSTREAM_URL": storage,
        "PROMETHEUS_MULTIPROC_DIR": str(base / "prom-floor"),
    }
    processes.append(spawn(argv, env, base / "floor.log", module="gunicorn"))
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, process=processes[-1], log=base / "floor.log")
    return url


def deny_checks(url: str, token: str, checks: int) -> None:
    """The deny-list check of one request, asking the database and from memory."""
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    engine = make_engine(url, isolation_level="AUTOCOMMIT")
    print(f"deny-list check of the buyer's token, {checks} checks, one thread:")
    for way, listen in (("database", False), ("memory", True)):
        revocations = Revocations(engine, keep_sessions=900, listen=listen)
        revocations.is_revoked(claims["jti"], claims["sid"])  # connect, load
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(checks):
            assert not revocations.is_revoked(claims["jti"], claims["sid"])
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        print(
            f"  {way:<9} CPU {cpu / checks * 1000:.3f} ms, "
            f"wall {wall / checks * 1000:.3f} ms per check"
        )
        revocations.close()
    engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
