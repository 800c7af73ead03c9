"""What the benchmark scripts share: starting web processes, seeding through the
gateway, threaded load, percentiles, the SQL floor of a placement, and CPU time
per process read from /proc.

The scripts run as `.venv/bin/python benchmarks/bench_x.py`, so this module is
imported as `harness` (the scripts' directory is first on the path).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType

import requests
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from apps.orders.models import Order, OrderItem, OrderStatusChange, PlacementAttempt
from apps.storage import services as stock
from chomik import migrating
from chomik.auth import generate_key_pair
from chomik.db import utcnow
from chomik.infra import PostgresCluster, free_port
from chomik.messaging.outbox import emit
from chomik.settings import embedded_database_url
from clients.events import OrderItem as EventItem
from clients.events import OrderPlaced
from clients.orders import OrderStatus

PROJECT_DIR = Path(__file__).resolve().parent.parent
PASSWORD = "benchmark password"
ADDRESS = {
    "recipient": "Bench Buyer", "phone": "+79990000000", "country": "RU",
    "city": "Moscow", "street": "Tverskaya 1", "postal_code": "125009",
}  # fmt: skip
# Cheap password hashing and no registration limit: seeding registers many users.
FAST_AUTH_ENV = {
    "PASSWORD_HASH_TIME_COST": "1",
    "PASSWORD_HASH_MEMORY_KIB": "1024",
    "REGISTER_RATE_LIMIT": "100000/hour",
    "LOGIN_RATE_LIMIT": "100000/minute",
    "LOGIN_ADDRESS_RATE_LIMIT": "100000/minute",
    "LOGIN_ACCOUNT_RATE_LIMIT": "100000/minute",
    "LOGIN_ATTEMPT_RATE_LIMIT": "100000/minute",
}

# Quiet logs, cheap password hashes, no rate limits in the way of a load.
QUIET = {"LOG_LEVEL": "WARNING", **FAST_AUTH_ENV}


# -- processes -----------------------------------------------------------------


def spawn(
    argv: list[str], env: Mapping[str, str], log: Path, *, module: str = "chomik.cli"
) -> subprocess.Popen[bytes]:
    """`python -m module argv` in the project directory, its output in `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", module, *argv],
            cwd=PROJECT_DIR, env=dict(env), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def start_web(
    app: str, port: int, env: Mapping[str, str], log: Path
) -> subprocess.Popen[bytes]:
    """`chomik web <app>` on `port` (gunicorn), its output in `log`."""
    return spawn(["web", app, "--port", str(port)], env, log)


def start_worker(
    app: str, env: Mapping[str, str], log: Path
) -> subprocess.Popen[bytes]:
    """`chomik worker <app>`, its output in `log`."""
    return spawn(["worker", app], env, log)


def wait_ready(
    base: str,
    timeout: float = 180,
    process: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> None:
    """Wait until `base/health/ready` answers 200 (and `process` is still alive);
    if it never does, print the end of `log` before giving up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            break
        try:
            if requests.get(f"{base}/health/ready", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    if log is not None:
        print(log.read_text()[-3000:], file=sys.stderr)
    if process is not None and process.poll() is not None:
        raise SystemExit(f"{base}: the process exited ({process.returncode})")
    raise SystemExit(f"{base} did not get ready")


@dataclass(frozen=True)
class Services:
    """Web processes started on a cluster: where they answer, what they were given."""

    base: Path  # the run's directory (logs, keys)
    urls: dict[str, str]
    env: dict[str, str]  # the environment every process got (without DATABASE_URL)

    def app_env(self, app: str, cluster: PostgresCluster) -> dict[str, str]:
        """The environment of one app's process (web or worker)."""
        return {**self.env, "DATABASE_URL": cluster.url(f"chomik_{app}")}


def start_services(
    cluster: PostgresCluster,
    processes: list[subprocess.Popen[bytes]],
    apps: Iterable[str],
    *,
    databases: Iterable[str] = (),
    env: Mapping[str, str] | Callable[[dict[str, str]], Mapping[str, str]] = (
        MappingProxyType({})
    ),
) -> Services:
    """Create and migrate the apps' databases (and `databases`), start each app's web
    process on a free port with `env` on top of the common settings (or what
    `env(urls)` gives, for settings naming another app's address), wait until all are
    ready; the started processes are appended to `processes`."""
    apps = list(apps)
    names = [*apps, *databases]
    base = cluster.base_dir.parent
    cluster.create_databases([f"chomik_{name}" for name in names])
    for name in names:
        migrating.upgrade(name, cluster.url(f"chomik_{name}"))
    private, public = generate_key_pair()
    (base / "jwt-private.pem").write_bytes(private)
    (base / "jwt-public.pem").write_bytes(public)
    ports = {name: free_port() for name in apps}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    common = {
        **os.environ,
        **QUIET,
        "JWT_PRIVATE_KEY_FILE": str(base / "jwt-private.pem"),
        "JWT_PUBLIC_KEY_FILE": str(base / "jwt-public.pem"),
        **{f"{name.upper()}_URL": url for name, url in urls.items()},
        **(env(urls) if callable(env) else env),
    }
    services = Services(base, urls, common)
    for name in apps:
        (base / f"prom-{name}").mkdir()
        app_env = {
            **services.app_env(name, cluster),
            "PROMETHEUS_MULTIPROC_DIR": str(base / f"prom-{name}"),
        }
        processes.append(start_web(name, ports[name], app_env, base / f"{name}.log"))
    for name, url in urls.items():
        wait_ready(url, log=base / f"{name}.log")
    return services


# -- figures -------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def measure(
    name: str, run: Callable[[], tuple[list[float], float]]
) -> dict[str, float]:
    """Run a load, print its line (count, p50, p99, per second), return the row."""
    return row(name, *run())


def row(name: str, latencies: list[float], elapsed: float) -> dict[str, float]:
    """Print a load's line (count, p50, p99, per second) and return it."""
    figures = {
        "p50": percentile(latencies, 50) * 1000,
        "p99": percentile(latencies, 99) * 1000,
        "rps": len(latencies) / elapsed,
    }
    print(
        f"{name:<22} {len(latencies):>6} {figures['p50']:>9.2f} "
        f"{figures['p99']:>9.2f} {figures['rps']:>9.1f}"
    )
    return figures


def statement_args(
    doc: str, *, calls: int, rows: int | None = None
) -> argparse.Namespace:
    """The options of a one-statement benchmark: a database, calls, rounds (and
    rows of its table, when it has a `rows` default)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument(
        "--database-url",
        default=embedded_database_url("postgres"),
        help="any PostgreSQL database (default: that of a running `chomik run`)",
    )
    parser.add_argument("--calls", type=int, default=calls)
    parser.add_argument("--rounds", type=int, default=3)
    if rows is not None:
        parser.add_argument("--rows", type=int, default=rows)
    return parser.parse_args()


def in_turns(
    what: str, ways: Mapping[str, Callable[[], None]], *, calls: int, rounds: int
) -> None:
    """Run each way `calls` times, in turns for `rounds` rounds; print the CPU and
    wall milliseconds per call, and the first way's CPU over the last's."""
    print(f"{what}, {calls} calls per turn, one connection")
    print(f"{'turn':<5} {'way':<16} {'CPU ms/call':>12} {'wall ms/call':>13}")
    ratios = []
    for turn in range(1, rounds + 1):
        spent = {}
        for way, call in ways.items():
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(calls):
                call()
            per = 1000 / calls
            spent[way] = (time.process_time() - cpu) * per
            print(f"{turn:<5} {way:<16} {spent[way]:12.3f}"
                  f" {(time.perf_counter() - wall) * per:13.3f}")  # fmt: skip
        first, *_, last = spent
        ratios.append(spent[first] / spent[last])
    print(f"CPU per call, {first} / {last}: x{min(ratios):.1f} to x{max(ratios):.1f}")


# -- seeding through the gateway -----------------------------------------------


def register(gateway: str, email: str, role: str) -> str:
    """Register one user through the gateway; return an access token."""
    requests.post(
        f"{gateway}/api/v1/auth/register",
        json={"email": email, "password": PASSWORD, "name": role, "role": role},
        timeout=30,
    ).raise_for_status()
    return login(gateway, email)


def login(gateway: str, email: str) -> str:
    response = requests.post(
        f"{gateway}/api/v1/auth/login",
        json={"email": email, "password": PASSWORD},
        timeout=30,
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


@dataclass
class Buyer:
    """A registered buyer: email, headers with a fresh token, an address id."""

    email: str
    headers: dict[str, str]
    address_id: str
    account_id: str = ""


def seed(
    gateway: str, products: int, buyers: int, *, tag: str = ""
) -> tuple[list[str], list[Buyer]]:
    """A seller's products (plenty of stock) and buyers with an address each."""
    tag = tag or uuid.uuid4().hex[:6]
    seller = {
        "Authorization": f"Bearer {register(gateway, f's-{tag}@b.example', 'seller')}"
    }
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
        email = f"b{n}-{tag}@b.example"
        headers = {"Authorization": f"Bearer {register(gateway, email, 'buyer')}"}
        response = requests.post(
            f"{gateway}/api/v1/addresses", headers=headers, json=ADDRESS, timeout=30
        )
        response.raise_for_status()
        people.append(Buyer(email, headers, response.json()["id"]))
    return product_ids, people


# -- load ------------------------------------------------------------------------


@dataclass
class Outcome:
    """What a load run saw: latencies by step, errors by kind, wall time."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    done: int = 0
    elapsed: float = 0.0

    def add(self, step: str, seconds: float) -> None:
        self.latencies.setdefault(step, []).append(seconds)


class StepError(Exception):
    """One step of a scripted user failed; `kind` groups it in the report."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def error_kind(step: str, response: requests.Response) -> StepError:
    """`<step> <status> <problem type>` of an unexpected answer."""
    kind = ""
    try:
        body = response.json()
        if isinstance(body, dict):
            kind = str(body.get("type") or "").rsplit("/", 1)[-1]
    except ValueError:
        pass
    return StepError(f"{step} {response.status_code} {kind}".strip())


def run_users(
    script: Callable[[int, Outcome], None], total: int, concurrency: int
) -> Outcome:
    """Run `script(user index, outcome)` `total` times from `concurrency` threads.

    The script records its steps' latencies; an exception counts as an error of
    its kind (StepError) or of its class.
    """
    outcome = Outcome()
    lock = threading.Lock()
    counter = iter(range(total))

    def user(index: int) -> None:
        mine = Outcome()
        while True:
            with lock:
                if next(counter, None) is None:
                    break
            try:
                script(index, mine)
                mine.done += 1
            except StepError as exc:
                mine.errors[exc.kind] += 1
            except Exception as exc:  # noqa: BLE001 - counted and reported
                mine.errors[type(exc).__name__] += 1
        with lock:
            for step, values in mine.latencies.items():
                outcome.latencies.setdefault(step, []).extend(values)
            outcome.errors.update(mine.errors)
            outcome.done += mine.done

    threads = [threading.Thread(target=user, args=(i,)) for i in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    outcome.elapsed = time.perf_counter() - started
    return outcome


def load(
    place: Callable[[int, str], None], total: int, concurrency: int
) -> tuple[list[float], float]:
    """Place `total` orders from `concurrency` threads; return latencies, wall time."""

    def script(index: int, outcome: Outcome) -> None:
        start = time.perf_counter()
        place(index, uuid.uuid4().hex)
        outcome.add("place", time.perf_counter() - start)

    outcome = run_users(script, total, concurrency)
    if outcome.errors:
        raise SystemExit(f"failed placements: {dict(outcome.errors)}")
    return outcome.latencies["place"], outcome.elapsed


# -- the SQL floor of a placement ------------------------------------------------

_KEYS = sa.table(
    "idempotency_keys", sa.column("scope"), sa.column("key"),
    sa.column("fingerprint"), sa.column("expires_at"),
    sa.column("response_status"),
)  # fmt: skip
_PRODUCTS = sa.table(
    "products", sa.column("id"), sa.column("price"), sa.column("currency"),
    sa.column("quantity"), sa.column("reserved"), sa.column("seller_id"),
)  # fmt: skip
_ADDRESSES = sa.table("addresses", sa.column("id"), sa.column("buyer_id"))


def directly(
    storage: sessionmaker[Session],
    orders: sessionmaker[Session],
    product_ids: list[str],
    delivery: sessionmaker[Session] | None = None,
) -> Callable[[int, str], None]:
    """The SQL a placement does, without HTTP: what the services cost at the least.

    In storage's database the product read and the reservation, in delivery's
    the address read, in orders' the attempt row (its own transaction) and then
    the key, the order, its line, history, outbox row and stored answer.
    """

    def place(index: int, key: str) -> None:
        order_id, buyer = uuid.uuid4(), uuid.uuid4()
        product = uuid.UUID(random.choice(product_ids))
        with storage.begin() as session:
            session.execute(sa.select(_PRODUCTS).where(_PRODUCTS.c.id == product)).one()
        if delivery is not None:
            with delivery.begin() as session:
                session.execute(
                    sa.select(_ADDRESSES.c.buyer_id).where(
                        _ADDRESSES.c.id == uuid.uuid4()
                    )
                ).first()
        with orders.begin() as session:
            session.add(PlacementAttempt(order_id=order_id, buyer_id=buyer,
                                         next_check_at=utcnow()))  # fmt: skip
        with storage.begin() as session:
            held = stock.reserve_stock(
                session, order_id=order_id, lines=[stock.StockLine(product, 1)]
            ).reservation.items[0]
        with orders.begin() as session:
            session.execute(
                sa.insert(_KEYS).values(scope=f"orders.place {buyer}", key=key,
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
                sa.update(_KEYS).where(_KEYS.c.key == key).values(response_status=201)
            )

    return place


# -- CPU time per process, from /proc ------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgrp: int
    cpu: float  # seconds, its own and its reaped children's


def processes() -> list[Proc]:
    """Every process of the machine that can be read now."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        # fields[0] is state (stat field 3): ppid 4, pgrp 5, utime 14 .. cstime 17.
        ticks = sum(int(value) for value in fields[11:15])
        found.append(
            Proc(int(entry), int(fields[1]), int(fields[2]), ticks / CLOCK_TICKS)
        )
    return found


def cpu_by_label(groups: Mapping[str, int], trees: Mapping[str, int]) -> Counter[str]:
    """CPU seconds so far of each process group (label -> group id) and of each
    process tree (label -> root pid: PostgreSQL's postmaster and its children)."""
    procs = processes()
    by_group = {pgrp: label for label, pgrp in groups.items()}
    by_parent = {pid: label for label, pid in trees.items()}
    totals: Counter[str] = Counter()
    for proc in procs:
        label = by_group.get(proc.pgrp)
        if label is None:
            label = by_parent.get(proc.pid) or by_parent.get(proc.ppid)
        if label is not None:
            totals[label] += proc.cpu
    return totals


def own_cpu() -> float:
    """This process's CPU seconds so far (the load generator)."""
    times = os.times()
    return times.user + times.system


def cpu_delta(after: Counter[str], before: Counter[str]) -> dict[str, float]:
    return {label: after[label] - before[label] for label in after}


def format_cpu(per_order: Mapping[str, float], labels: Iterable[str]) -> str:
    return "  ".join(
        f"{label} {per_order.get(label, 0) * 1000:.2f}" for label in labels
    )
