"""Checkout: the whole purchase under load through the gateway, beside the SQL floor.

Starts `chomik run` (at CHOMIK_HOST, with its own data directory and free ports
for PostgreSQL and the broker), or attaches to a running one (`--attach DIR`, its
data directory). Seeds a seller's products and buyers (address, bank account)
through the gateway. Then, at each concurrency (1, 8, 32, 64 buyers):

* floor: the SQL a placement does, run directly with psycopg2 on the system's own
  databases (harness.directly), from as many threads as buyers;
* place: each buyer browses (the catalog's first page, one product) and places an
  order of one unit, through the gateway;
* purchase: each buyer browses, places, starts the payment, pays at the bank mock
  and polls the order through the gateway until it is PAID, as an app would: first
  after 50 ms, then at doubling intervals up to `--poll` (0.5 s).

Per phase it prints orders per second, p50/p95/p99 of placement and of
pay -> PAID (from starting the payment to the start of the transaction that moved
the order to PAID, as its status history holds: a lower bound, which polls that
catch it late do not lengthen), errors by kind, and the
CPU milliseconds per order of every process of the system (from /proc: each
launcher child's process group, PostgreSQL's server processes, this load
generator as `client`), and writes them to benchmarks/results/<date>.md.

Run: .venv/bin/python benchmarks/bench_checkout.py [--concurrency 1,8,32,64]
     [--orders 400] [--purchases 160] [--attach DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests
import sqlalchemy as sa
from harness import (
    FAST_AUTH_ENV,
    PROJECT_DIR,
    Buyer,
    Outcome,
    StepError,
    cpu_by_label,
    directly,
    error_kind,
    login,
    own_cpu,
    percentile,
    run_users,
    seed,
)
from sqlalchemy.orm import Session, sessionmaker

from chomik.db import make_engine, make_session_factory
from chomik.infra import free_port
from clients.orders.moves import define_order_tables
from clients.orders.states import OrderStatus

# The history of orders' moves, read for when each order became PAID.
_HISTORY = define_order_tables(sa.MetaData()).history
FIRST_POLL = 0.05  # seconds; then doubling, up to --poll
GATEWAY_PORT = 17000
BANK_PORT = 17006
PROCESS_ORDER = ("gateway", "orders", "storage", "delivery", "payment", "bank")


@dataclass
class System:
    """A running `chomik run`: where it answers, where it keeps its records."""

    host: str
    data_dir: Path
    pg_port: int
    launcher: subprocess.Popen[bytes] | None = None

    @property
    def api(self) -> str:
        return f"http://{self.host}:{GATEWAY_PORT}/api/v1"

    @property
    def gateway(self) -> str:
        return f"http://{self.host}:{GATEWAY_PORT}"

    @property
    def bank(self) -> str:
        return f"http://{self.host}:{BANK_PORT}/api/v1"

    def database_url(self, name: str) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.pg_port}/chomik_{name}"

    def groups(self) -> dict[str, int]:
        """Each launcher child's process group, from the run records."""
        found = {}
        for record in (self.data_dir / "run").glob("*.pid"):
            with contextlib.suppress(ValueError, OSError):
                found[record.stem] = int(record.read_text().split()[0])
        return found

    def trees(self) -> dict[str, int]:
        """PostgreSQL's postmaster (its server processes are its children)."""
        cluster = self.data_dir / "run" / "postgres.cluster"
        with contextlib.suppress(ValueError, OSError):
            data = Path(cluster.read_text().strip())
            return {"postgres": int((data / "postmaster.pid").read_text().split()[0])}
        return {}

    def cpu(self) -> Counter[str]:
        """CPU seconds so far per process (workers folded into `<app>-workers`)."""
        totals: Counter[str] = Counter()
        for label, seconds in cpu_by_label(self.groups(), self.trees()).items():
            totals[folded(label)] += seconds
        totals["client"] = own_cpu()
        return totals


def folded(label: str) -> str:
    """A process's label with an app's worker replicas as one: `orders-workers`."""
    app, _, replica = label.partition("-worker")
    return f"{app}-workers" if replica else label


def system_arguments(parser: argparse.ArgumentParser) -> None:
    """The options `running` reads."""
    parser.add_argument("--attach", metavar="DIR", help="data dir of a running system")
    parser.add_argument("--pg-port", type=int, default=None)
    parser.add_argument("--log-level", default="WARNING")


@contextlib.contextmanager
def running(args: argparse.Namespace) -> Iterator[System]:
    """The system measured: the one at `--attach DIR`, else `chomik run` launched."""
    host = os.environ.get("CHOMIK_HOST", "127.0.0.1")
    if args.attach:
        pg_port = args.pg_port or int(os.environ.get("EMBEDDED_PG_PORT", "17432"))
        yield System(host, Path(args.attach), pg_port)
        return
    # SIGTERM (`timeout`, a CI job's end) unwinds too: the system is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with launched(host, args.log_level) as system:
        yield system


@contextlib.contextmanager
def launched(host: str, log_level: str) -> Iterator[System]:
    """`chomik run` on a fresh data directory and free ports; stopped after."""
    data_dir = Path(tempfile.mkdtemp(prefix="chomik-bench-checkout-"))
    data_dir.chmod(0o755)  # PostgreSQL runs as `postgres` when we are root
    pg_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.endswith("_DATABASE_URL")}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env.update(
        CHOMIK_HOST=host,
        CHOMIK_DATA_DIR=str(data_dir),
        EMBEDDED_PG_PORT=str(pg_port),
        EMBEDDED_KAFKA_PORT=str(free_port()),
        LOG_LEVEL=log_level,
        ACCESS_TOKEN_TTL="7200",
        ORDER_MAX_UNPAID="100000",  # the place phases leave every order unpaid
        **FAST_AUTH_ENV,
    )
    log = data_dir / "launcher.log"
    with log.open("wb") as out:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "chomik.cli", "run"], env=env, cwd=PROJECT_DIR,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    system = System(host, data_dir, pg_port, launcher)
    try:
        deadline = time.monotonic() + 240
        while "Press Ctrl-C" not in log.read_text(errors="replace"):
            if launcher.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"chomik run did not start:\n{log.read_text()}")
            time.sleep(0.5)
        yield system
    finally:
        launcher.send_signal(signal.SIGTERM)
        try:
            launcher.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


# -- the buyers' scripts -------------------------------------------------------


@dataclass
class Shop:
    """The seeded catalog and buyers, and one HTTP session per buyer thread."""

    system: System
    product_ids: list[str]
    buyers: list[Buyer]
    poll: float
    orders: sessionmaker[Session]
    sessions: dict[int, requests.Session] = field(default_factory=dict)

    def session(self, index: int) -> requests.Session:
        if index not in self.sessions:
            self.sessions[index] = requests.Session()
        return self.sessions[index]

    def call(
        self, index: int, step: str, method: str, path: str, expect: int, **kw: object
    ) -> dict:
        buyer = self.buyers[index % len(self.buyers)]
        headers = {**buyer.headers, **kw.pop("headers", {})}  # type: ignore[dict-item]
        response = self.session(index).request(
            method, f"{self.system.api}{path}", headers=headers, timeout=60, **kw
        )
        if response.status_code != expect:
            raise error_kind(step, response)
        return response.json()  # type: ignore[no-any-return]

    def browse_and_place(self, index: int, outcome: Outcome) -> dict:
        buyer = self.buyers[index % len(self.buyers)]
        self.call(index, "browse", "GET", "/products?page_size=20", 200)
        product_id = random.choice(self.product_ids)
        self.call(index, "browse", "GET", f"/products/{product_id}", 200)
        start = time.perf_counter()
        order = self.call(
            index, "place", "POST", "/orders", 201,
            headers={"Idempotency-Key": uuid.uuid4().hex},
            json={"items": [{"product_id": product_id, "quantity": 1}],
                  "address_id": buyer.address_id},
        )  # fmt: skip
        outcome.add("place", time.perf_counter() - start)
        return order

    def purchase(self, index: int, outcome: Outcome) -> None:
        order = self.browse_and_place(index, outcome)
        buyer = self.buyers[index % len(self.buyers)]
        start = time.time()  # the wall clock, as PostgreSQL's now() in the history
        payment = self.call(index, "pay", "POST", f"/orders/{order['id']}/payment", 201)
        paid = self.session(index).post(
            payment["pay_url"], json={"account_id": buyer.account_id}, timeout=60
        )
        if paid.status_code != 200 or paid.json().get("status") != "SUCCEEDED":
            raise error_kind("bank-pay", paid)
        deadline, wait = time.monotonic() + 60, min(FIRST_POLL, self.poll)
        while True:
            time.sleep(wait)
            status = self.call(index, "poll", "GET", f"/orders/{order['id']}", 200)
            if status["status"] == "PAID":
                break
            if time.monotonic() > deadline:
                raise StepError("paid-timeout")
            wait = min(wait * 2, self.poll)
        outcome.add("pay->PAID", self.paid_at(order["id"]) - start)

    def paid_at(self, order_id: str) -> float:
        """When the order moved to PAID: its history row's `now()`, the start of
        the transaction that moved it, so a lower bound (that transaction is one
        branch of a two-phase commit, visible once the coordinator commits it)."""
        with self.orders() as session:
            at = session.execute(
                sa.select(_HISTORY.c.at).where(
                    _HISTORY.c.order_id == uuid.UUID(order_id),
                    _HISTORY.c.to_status == OrderStatus.PAID,
                )
            ).scalar_one()
        return at.timestamp()  # type: ignore[no-any-return]


def open_accounts(system: System, buyers: list[Buyer]) -> None:
    for buyer in buyers:
        response = requests.post(
            f"{system.bank}/accounts",
            json={"owner": buyer.email, "balance": "100000000.00"},
            timeout=30,
        )
        response.raise_for_status()
        buyer.account_id = response.json()["id"]


def fresh_tokens(system: System, buyers: list[Buyer]) -> None:
    """Log every buyer in again: a phase must not outlive their tokens."""
    for buyer in buyers:
        token = login(system.gateway, buyer.email)
        buyer.headers = {"Authorization": f"Bearer {token}"}


# -- phases and the report -----------------------------------------------------


@dataclass
class Row:
    phase: str
    concurrency: int
    outcome: Outcome
    cpu: dict[str, float]  # CPU seconds per order, by process

    @property
    def rate(self) -> float:
        return self.outcome.done / self.outcome.elapsed if self.outcome.elapsed else 0

    def ms(self, step: str, q: float) -> str:
        values = self.outcome.latencies.get(step)
        return f"{percentile(values, q) * 1000:.1f}" if values else "-"


def phase(
    system: System,
    name: str,
    concurrency: int,
    total: int,
    script: Callable[[int, Outcome], None],
) -> Row:
    before = system.cpu()
    outcome = run_users(script, total, concurrency)
    after = system.cpu()
    done = max(outcome.done, 1)
    cpu = {label: (after[label] - before[label]) / done for label in after}
    return Row(name, concurrency, outcome, cpu)


def floor_script(place: Callable[[int, str], None]) -> Callable[[int, Outcome], None]:
    def script(index: int, outcome: Outcome) -> None:
        start = time.perf_counter()
        place(index, uuid.uuid4().hex)
        outcome.add("place", time.perf_counter() - start)

    return script


def cpu_labels(rows: list[Row]) -> list[str]:
    seen: set[str] = set()
    for row in rows:
        seen.update(label for label, value in row.cpu.items() if value > 0.00005)
    order = [*PROCESS_ORDER, "postgres", "tansu", "client"]
    workers = sorted(label for label in seen if label.endswith("-workers"))
    rest = sorted(seen - set(order) - set(workers))
    return [label for label in order if label in seen] + workers + rest


def print_row(row: Row, labels: list[str]) -> None:
    out = row.outcome
    errors = ", ".join(f"{k}: {v}" for k, v in out.errors.most_common()) or "none"
    print(
        f"{row.phase:<9} {row.concurrency:>3} {out.done:>6} {row.rate:>9.1f} "
        f"{row.ms('place', 50):>7} {row.ms('place', 95):>7} {row.ms('place', 99):>7} "
        f"{row.ms('pay->PAID', 50):>7} {row.ms('pay->PAID', 95):>7} "
        f"{row.ms('pay->PAID', 99):>7}  errors: {errors}"
    )
    total = sum(row.cpu.get(label, 0) for label in labels if label != "client")
    parts = "  ".join(f"{label} {row.cpu.get(label, 0) * 1000:.2f}" for label in labels)
    print(f"{'':>14}CPU ms/order: {parts}  | system total {total * 1000:.2f}")


def markdown(rows: list[Row], labels: list[str], header: list[str]) -> str:
    lines = [*header, ""]
    lines.append(
        "| phase | buyers | orders | orders/s | place p50 | p95 | p99 "
        "| pay→PAID p50 | p95 | p99 | errors |"
    )
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for row in rows:
        errors = ", ".join(f"{k}: {v}" for k, v in row.outcome.errors.items())
        lines.append(
            f"| {row.phase} | {row.concurrency} | {row.outcome.done} "
            f"| {row.rate:.1f} | {row.ms('place', 50)} | {row.ms('place', 95)} "
            f"| {row.ms('place', 99)} | {row.ms('pay->PAID', 50)} "
            f"| {row.ms('pay->PAID', 95)} | {row.ms('pay->PAID', 99)} "
            f"| {errors or 'none'} |"
        )
    lines += ["", "CPU milliseconds per order, by process:", ""]
    lines.append("| phase | buyers | " + " | ".join(labels) + " | system |")
    lines.append("|---|---:|" + "---:|" * (len(labels) + 1))
    for row in rows:
        cells = [f"{row.cpu.get(label, 0) * 1000:.2f}" for label in labels]
        total = sum(row.cpu.get(label, 0) for label in labels if label != "client")
        lines.append(
            f"| {row.phase} | {row.concurrency} | "
            + " | ".join(cells)
            + f" | {total * 1000:.2f} |"
        )
    return "\n".join(lines) + "\n"


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.1f} GiB RAM"
    return (
        f"{os.cpu_count()} cores ({cpu}){memory}, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}, "
        f"load average before the run {os.getloadavg()[0]:.1f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default="1,8,32,64")
    parser.add_argument("--orders", type=int, default=400, help="per place phase")
    parser.add_argument("--purchases", type=int, default=160, help="per purchase phase")
    parser.add_argument("--products", type=int, default=200)
    parser.add_argument("--phases", default="floor,place,purchase")
    parser.add_argument(
        "--poll", type=float, default=0.5, help="longest wait between polls, s"
    )
    system_arguments(parser)
    parser.add_argument(
        "--out",
        default=str(PROJECT_DIR / "benchmarks" / "results" / f"{_today()}.md"),
        help="where the figures are written as Markdown too, above what it held",
    )
    args = parser.parse_args()
    with running(args) as system:
        return measure(system, args)


def measure(system: System, args: argparse.Namespace) -> int:
    levels = [int(n) for n in args.concurrency.split(",")]
    phases = args.phases.split(",")
    machine_line = machine()
    print(f"seeding {args.products} products and {max(levels)} buyers ...", flush=True)
    product_ids, buyers = seed(system.gateway, args.products, max(levels))
    open_accounts(system, buyers)
    storage, orders, delivery = (
        make_session_factory(make_engine(system.database_url(name), pool_size=64))
        for name in ("storage", "orders", "delivery")
    )
    shop = Shop(system, product_ids, buyers, args.poll, orders)
    floor = floor_script(directly(storage, orders, product_ids, delivery))
    run_users(floor, 50, 4)  # warm pools and workers
    run_users(shop.purchase, 20, 4)
    workers = os.environ.get("WEB_CONCURRENCY", "2")
    threads = os.environ.get("WEB_THREADS", "4")
    header = [
        f"Checkout through the gateway of `chomik run` at {system.host} "
        f"(gunicorn {workers} workers x {threads} threads per app); "
        f"{len(product_ids)} products, one unit of a random one per order.",
        f"Machine: {machine_line}.",
    ]
    print("\n".join(header))
    print(
        f"{'phase':<9} {'n':>3} {'orders':>6} {'orders/s':>9} {'place50':>7} "
        f"{'95':>7} {'99':>7} {'paid50':>7} {'95':>7} {'99':>7}   (ms)"
    )
    rows: list[Row] = []
    out = Path(args.out)
    earlier = out.read_text() if out.exists() else ""  # kept below this run's
    for concurrency in levels:
        fresh_tokens(system, buyers)
        scale = 1 if concurrency > 1 else 4
        by_phase: dict[str, Row] = {}
        for name in phases:
            if name == "floor":
                row = phase(system, "floor", concurrency, args.orders // scale, floor)
            elif name == "place":
                row = phase(
                    system, "place", concurrency, args.orders // scale,
                    lambda i, o: shop.browse_and_place(i, o) and None,
                )  # fmt: skip
            else:
                row = phase(
                    system, "purchase", concurrency, args.purchases // scale,
                    shop.purchase,
                )  # fmt: skip
            by_phase[name] = row
            rows.append(row)
            print_row(row, cpu_labels([row]))
            # After every phase: a run cut short still leaves its figures.
            write(out, markdown(rows, cpu_labels(rows), header), earlier)
        if "floor" in by_phase and "place" in by_phase:
            floor_row, place_row = by_phase["floor"], by_phase["place"]
            print(
                f"  ratio place/floor at {concurrency}: orders/s "
                f"x{place_row.rate / floor_row.rate:.2f}, p50 "
                f"x{float(place_row.ms('place', 50)) / float(floor_row.ms('place', 50)):.1f}"
            )
    print(f"written to {args.out}")
    return 0


def write(path: Path, text: str, earlier: str) -> None:
    """This run's figures, then what the file held before it (never lost)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{text}\n---\n\n{earlier}" if earlier else text)


def _today() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")


if __name__ == "__main__":
    sys.exit(main())
