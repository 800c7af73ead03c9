"""Where an order's CPU goes: a phase of bench_checkout, sampled with py-spy.

Starts `chomik run` as bench_checkout does (or attaches: `--attach DIR`), seeds the
same catalog and buyers, and runs the place phase (browse the catalog, open one
product, `POST /orders`) or, with `--phase purchase`, the whole purchase (place, pay,
wait for PAID) at `--concurrency` buyers for `--orders` orders. Meanwhile
py-spy samples every process of the apps on the phase's path for `--seconds`,
`--gil` (only the thread holding the GIL: the process's Python CPU). Each process's
CPU per order (from /proc over the whole phase, as bench_checkout measures it) is
split by what its samples were doing. A sample counts for the innermost frame of a
known kind, walking its stack outward from where it was caught:

- gunicorn: the server (its event loop, thread pool, parsing, writing);
- Flask: Flask and Werkzeug (routing, request and response objects);
- schemas: marshmallow, webargs, flask-smorest (validating, serializing);
- JWT: flask-jwt-extended, PyJWT, cryptography;
- database: SQLAlchemy (ORM, Core, pool) and psycopg2;
- HTTP calls: requests, urllib3 and http.client, with their sockets (a call out);
- Kafka: kafka-python; APScheduler: the job scheduler;
- metrics, logging, JSON: prometheus_client, `logging`, `json`;
- ours: the apps, the kit and the clients (what is left after the above);
- other: the rest (the interpreter's threading, imports...).

Prints, per process, CPU milliseconds per order and their split, then the whole
order's milliseconds per kind. PostgreSQL, the broker and the load generator are
counted (from /proc) but not sampled.

Run: CHOMIK_HOST=127.0.0.6 .venv/bin/python benchmarks/profile_checkout.py
     [--phase place|purchase] [--concurrency 32] [--orders 1500] [--seconds 20]
     [--rate 50] [--attach DIR]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from bench_checkout import (
    Shop,
    System,
    folded,
    open_accounts,
    phase,
    running,
    system_arguments,
)
from harness import seed

from chomik.db import make_engine, make_session_factory

# Walking a stack outward, the first frame whose file matches decides its kind
# (py-spy names files relative to site-packages or the standard library).
KINDS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(rf"(^|/)({pattern})"))
    for kind, pattern in (
        ("gunicorn", r"gunicorn/"),
        ("Flask", r"flask/|werkzeug/"),
        ("schemas", r"marshmallow/|webargs/|flask_smorest/|apispec/"),
        ("JWT", r"flask_jwt_extended/|jwt/|cryptography/"),
        ("database", r"sqlalchemy/|psycopg2/"),
        ("HTTP calls", r"requests/|urllib3/|http/client\.py"),
        ("Kafka", r"kafka/"),
        ("APScheduler", r"apscheduler/"),
        ("metrics", r"prometheus_client/|prometheus_flask_exporter/"),
        ("logging", r"logging/"),
        ("JSON", r"json/"),
        ("ours", r"apps/|chomik/|clients/|mocks/|txcoord/"),
    )
)
OTHER = "other"
# The apps sampled (web processes and workers) in each phase: those on its path.
SAMPLED = {
    "place": ("gateway", "orders", "storage", "delivery"),
    "purchase": ("gateway", "orders", "storage", "delivery", "payment", "bank",
                 "carrier"),
}  # fmt: skip


def kind_of(stack: list[str]) -> str:
    """The kind of one sample: its innermost frame of a known kind."""
    for frame in reversed(stack):  # frames of no kind (threading, socket...) pass
        where = frame.rpartition("(")[2]
        for kind, pattern in KINDS:
            if pattern.search(where):
                return kind
    return OTHER


def read_samples(path: Path) -> Counter[str]:
    """Samples per kind from a py-spy raw (collapsed stacks) file."""
    kinds: Counter[str] = Counter()
    if not path.exists():
        return kinds
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            # The first frames name the process and thread, not code.
            frames = [f for f in stack.split(";") if not f.startswith("process ")]
            kinds[kind_of(frames)] += int(count)
    return kinds


def sample(
    targets: dict[str, int], seconds: float, rate: int, out: Path
) -> dict[str, Path]:
    """py-spy each target (and its child processes) for `seconds`; the raw files."""
    spy = str(Path(sys.executable).with_name("py-spy"))
    options = ["--gil", "--subprocesses", "--nonblocking", "--format", "raw"]
    options += ["--rate", str(rate), "--duration", str(int(seconds))]
    files = {label: out / f"{label}.txt" for label in targets}
    procs = [
        subprocess.Popen(
            [spy, "record", *options, "--output", str(files[label]), "--pid", str(pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for label, pid in targets.items()
    ]
    for proc in procs:
        try:
            proc.wait(seconds + 60)
        except subprocess.TimeoutExpired:
            proc.kill()
            print(f"warning: py-spy did not finish ({proc.args[-1]}); not sampled")
    return files


def targets_of(system: System, name: str) -> dict[str, int]:
    """{label: pid} of the processes sampled in phase `name` (workers folded per
    app later)."""
    return {
        label: pid
        for label, pid in system.groups().items()
        if folded(label).removesuffix("-workers") in SAMPLED[name]
    }


def report(cpu: dict[str, float], samples: dict[str, Counter[str]]) -> None:
    """Per process and in all: CPU ms per order by kind."""
    kinds = [kind for kind, _ in KINDS] + [OTHER]
    totals: Counter[str] = Counter()
    print("\nCPU ms per order, by process (py-spy --gil shares of its /proc CPU):")
    for label, seconds in sorted(cpu.items(), key=lambda item: -item[1]):
        ms = seconds * 1000
        if ms < 0.05:
            continue
        counts = samples.get(label)
        if not counts or not sum(counts.values()):
            totals["not sampled: " + label] += ms
            print(f"  {label:<16} {ms:6.2f}  (not sampled)")
            continue
        whole = sum(counts.values())
        parts = []
        for kind in sorted(kinds, key=lambda k: -counts[k]):
            share = ms * counts[kind] / whole
            totals[kind] += share
            if share >= 0.05:
                parts.append(f"{kind} {share:.2f}")
        print(f"  {label:<16} {ms:6.2f}  = " + ", ".join(parts))
    print("\nthe whole order, CPU ms per order by kind:")
    for kind, ms in totals.most_common():
        print(f"  {kind:<28} {ms:6.2f}")
    print(f"  {'total':<28} {sum(totals.values()):6.2f}")


def profile(system: System, args: argparse.Namespace) -> int:
    print(f"seeding {args.products} products and {args.concurrency} buyers ...")
    product_ids, buyers = seed(system.gateway, args.products, args.concurrency)
    open_accounts(system, buyers)
    orders = make_session_factory(make_engine(system.database_url("orders")))
    shop = Shop(system, product_ids, buyers, poll=0.5, orders=orders)

    def place(index: int, outcome: object) -> None:
        shop.browse_and_place(index, outcome)  # type: ignore[arg-type]

    script = place if args.phase == "place" else shop.purchase
    phase(system, "warm-up", 4, 40, script)
    out = Path(tempfile.mkdtemp(prefix="chomik-profile-"))
    found: dict[str, Path] = {}

    def spy() -> None:
        time.sleep(args.delay)  # the phase at full speed first
        targets = targets_of(system, args.phase)
        found.update(sample(targets, args.seconds, args.rate, out))

    sampling = threading.Thread(target=spy, daemon=True)
    started = time.monotonic()
    sampling.start()
    row = phase(system, args.phase, args.concurrency, args.orders, script)
    sampling.join(args.delay + args.seconds + 120)
    if time.monotonic() - started < args.delay + args.seconds:
        print("warning: the phase ended before sampling did; raise --orders")
    print(
        f"{args.phase} phase at {args.concurrency} buyers: {row.outcome.done} orders, "
        f"{row.rate:.1f} orders/s, errors: {dict(row.outcome.errors) or 'none'}"
    )
    samples: dict[str, Counter[str]] = {}
    for label, path in found.items():
        samples.setdefault(folded(label), Counter()).update(read_samples(path))
    report(row.cpu, samples)
    print(f"\npy-spy's samples (collapsed stacks): {out}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phase", choices=sorted(SAMPLED), default="place")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--orders", type=int, default=1500)
    parser.add_argument("--products", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20, help="of sampling")
    parser.add_argument("--delay", type=float, default=5, help="before sampling")
    parser.add_argument("--rate", type=int, default=50, help="samples per second")
    system_arguments(parser)
    args = parser.parse_args()
    with running(args) as system:
        return profile(system, args)


if __name__ == "__main__":
    sys.exit(main())
