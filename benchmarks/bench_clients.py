"""The typed clients' cost per call: the kit's pooled `http.client` against `requests`.

Serves a small JSON app under gunicorn's threaded workers (as our services run)
and calls it from this process, one call at a time: a POST with a JSON body, as a
reservation is, and a GET with a query. Each round makes the same calls through
`clients._http.HttpClient` (the kit's connection pool) and through a
`requests.Session` sending what the clients sent before (the baseline), in turns.
Prints this process's CPU per call (the client's own cost; the server's is the
same for both), the p50 and p99 of the wall time, and their ratios.

Run: .venv/bin/python benchmarks/bench_clients.py [--calls 3000] [--rounds 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import requests
from harness import percentile, spawn

from chomik.infra import free_port, stop_process, wait_for_port
from clients._http import HttpClient

ORDER = "5b0e4f4e-8f7e-4c55-b0f4-5c0ad7c1a0f1"
BODY = {
    "order_id": ORDER,
    "items": [
        {"product_id": "0b7c2f0e-3a51-4d87-9a0b-2a3c1f1d9e01", "quantity": 2},
        {"product_id": "7f3d1c2b-9e4a-4f6b-8c1d-0e2f3a4b5c6d", "quantity": 1},
    ],
}
ANSWER = json.dumps({**BODY, "status": "HELD", "expires_at": "2026-12-02T10:00:00Z"})


def app(environ, start_response):  # type: ignore[no-untyped-def]
    """Reads the body and answers a reservation's worth of JSON."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length:
        environ["wsgi.input"].read(length)
    answer = ANSWER.encode()
    start_response(
        "200 OK",
        [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))],
    )
    return [answer]


def with_requests(base: str) -> Callable[[str], object]:
    """The calls as the clients made them before: a `requests.Session`."""
    session = requests.Session()
    session.trust_env = False
    headers = {
        "Accept": "application/json, application/problem+json",
        "Authorization": "Bearer x",
        "X-Request-Id": "bench",
    }

    def call(kind: str) -> object:
        if kind == "POST":
            response = session.request(
                "POST", f"{base}/api/v1/internal/reservations", json=BODY,
                params=None, headers=headers, timeout=5.0,
            )  # fmt: skip
        else:
            response = session.request(
                "GET", f"{base}/api/v1/internal/addresses/{ORDER}",
                json=None, params={"buyer_id": ORDER}, headers=headers, timeout=5.0,
            )  # fmt: skip
        return response.json()

    return call


def with_pool(base: str) -> Callable[[str], object]:
    """The calls as the clients make them now: `HttpClient` over the kit's pool."""
    client = HttpClient(base, token=lambda: "x")

    def call(kind: str) -> object:
        if kind == "POST":
            response = client.request(
                "POST", "/api/v1/internal/reservations", json=BODY, idempotent=True
            )
        else:
            response = client.request(
                "GET", f"/api/v1/internal/addresses/{ORDER}",
                params={"buyer_id": ORDER},
            )  # fmt: skip
        return response.json()

    return call


def measure(call: Callable[[str], object], calls: int) -> tuple[float, list[float]]:
    """CPU seconds of this process per call, and each call's wall time."""
    walls = []
    cpu = time.process_time()
    for n in range(calls):
        started = time.perf_counter()
        call("POST" if n % 2 else "GET")
        walls.append(time.perf_counter() - started)
    return (time.process_time() - cpu) / calls, walls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    port = free_port()
    log = Path("/tmp/chomik-bench-clients.log")
    server = spawn(
        ["--worker-class", "gthread", "--workers", "1", "--threads", "4",
         "--keep-alive", "5", "--bind", f"127.0.0.1:{port}",
         "--chdir", str(Path(__file__).parent), "bench_clients:app"],
        {"PATH": "/usr/bin:/bin"}, log, module="gunicorn",
    )  # fmt: skip
    try:
        if not wait_for_port(port, timeout=30):
            sys.exit(f"gunicorn did not start: see {log}")
        base = f"http://127.0.0.1:{port}"
        ways = {"requests": with_requests(base), "pool": with_pool(base)}
        for call in ways.values():
            measure(call, 200)  # warm up: connections, imports, caches
        cpu: dict[str, list[float]] = {name: [] for name in ways}
        walls: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(args.rounds):
            for name, call in ways.items():
                spent, took = measure(call, args.calls)
                cpu[name].append(spent)
                walls[name] += took
        print(f"{args.rounds} rounds of {args.calls} calls each way (GET and POST"
              " in turns), one at a time")  # fmt: skip
        print(f"{'client':10} {'CPU ms/call':>12} {'p50 ms':>8} {'p99 ms':>8}")
        for name in ways:
            print(
                f"{name:10} {statistics.median(cpu[name]) * 1000:12.3f}"
                f" {percentile(walls[name], 50) * 1000:8.3f} {percentile(walls[name], 99) * 1000:8.3f}"
            )
        ratio = statistics.median(cpu["pool"]) / statistics.median(cpu["requests"])
        print(f"pool / requests: CPU x{ratio:.2f}, p50 x"
              f"{percentile(walls['pool'], 50) / percentile(walls['requests'], 50):.2f}")  # fmt: skip
    finally:
        stop_process(server)


if __name__ == "__main__":
    main()
