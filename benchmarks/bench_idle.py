"""The idle cost of `chomik run`, emit -> handler latency, and how long a stop takes.

Starts `chomik run` (its own data directory, free ports for PostgreSQL and Kafka,
at `CHOMIK_HOST`), lets it settle, then:

- idle CPU: no traffic for `--seconds`; CPU time of every process of the system,
  read from `/proc` (user + system, with what exited children left to their
  parent), as % of one core, per process group and in total;
- emit -> handler latency: `--events` events emitted one per transaction through
  storage's outbox (`chomik.messaging.emit`), spaced `--gap` seconds apart (the
  system idles between them, the worst case for a poller that backs off), to a
  consumer (`chomik.messaging.Consumer`, the workers' settings) of a group of its
  own; p50, p99 and max from `emit` to the handler;
- the stop: SIGINT to the launcher, seconds until it has exited and until every
  process of the system is gone and every port free.

With `--attach DATA_DIR` it measures a system already running on that data
directory instead (PostgreSQL and Kafka at EMBEDDED_PG_PORT / EMBEDDED_KAFKA_PORT),
and leaves it running.

Usage: `CHOMIK_HOST=127.0.0.2 .venv/bin/python benchmarks/bench_idle.py
[--seconds 60] [--settle 120] [--events 30] [--gap 2] [--attach DATA_DIR]`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from chomik.apps import APPS
from chomik.db import utcnow
from chomik.infra import free_port, port_is_free
from chomik.messaging import Consumer, Envelope, Event, emit
from chomik.messaging.kafka import ensure_topics
from chomik.settings import EMBEDDED_KAFKA_PORT, EMBEDDED_PG_PORT, Settings

PROJECT_DIR = Path(__file__).resolve().parent.parent
TOPIC = "bench.idle"
TICKS = os.sysconf("SC_CLK_TCK")


@dataclasses.dataclass(frozen=True)
class Probe(Event):
    type = "bench.idle.probe"
    topic = TOPIC

    probe_id: str
    n: int


@dataclasses.dataclass
class System:
    """A running `chomik run`: where its data, databases and broker are."""

    data_dir: Path
    pg_port: int
    kafka_port: int
    host: str
    launcher: subprocess.Popen[str] | None = None

    def database_url(self, app: str) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.pg_port}/chomik_{app}"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    def postmaster(self) -> int:
        pid_file = self.data_dir / "pg" / "pgdata" / "postmaster.pid"
        return int(pid_file.read_text().split()[0])

    def groups(self) -> dict[int, str]:
        """{process group: label} of what the launcher recorded."""
        found = {}
        for record in (self.data_dir / "run").glob("*.pid"):
            try:
                found[int(record.read_text().split()[0])] = record.stem
            except (OSError, ValueError, IndexError):
                continue
        return found

    def ports(self) -> list[tuple[str, int]]:
        return [(self.host, spec.port) for spec in APPS] + [
            ("127.0.0.1", self.pg_port),
            ("127.0.0.1", self.kafka_port),
        ]


def start(host: str) -> System:
    data_dir = Path(tempfile.mkdtemp(prefix="chomik-bench-idle-"))
    data_dir.chmod(0o755)
    system = System(data_dir, free_port(), free_port(), host)
    env = {k: v for k, v in os.environ.items() if not k.endswith("_DATABASE_URL")}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env.update(
        CHOMIK_DATA_DIR=str(data_dir),
        EMBEDDED_PG_PORT=str(system.pg_port),
        EMBEDDED_KAFKA_PORT=str(system.kafka_port),
    )
    started = time.monotonic()
    system.launcher = subprocess.Popen(
        [sys.executable, "-m", "chomik.cli", "run"], cwd=PROJECT_DIR, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert system.launcher.stdout is not None
    lines = []
    for line in system.launcher.stdout:
        lines.append(line)
        if "Press Ctrl-C to stop" in line:
            break
    else:
        raise SystemExit(f"chomik run did not come up:\n{''.join(lines)}")
    # Keep reading its output, so that it never blocks on a full pipe.
    threading.Thread(target=system.launcher.stdout.read, daemon=True).start()
    print(f"chomik run up in {time.monotonic() - started:.1f}s (data {data_dir})")
    return system


# --- CPU from /proc ------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            tree.setdefault(int(stat[1]), []).append(int(entry.name))
    return tree


def family(roots: Iterable[int]) -> set[int]:
    """The roots and every live process below them."""
    tree = _children()
    found, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid not in found and _stat(pid) is not None:
            found.add(pid)
            todo.extend(tree.get(pid, []))
    return found


@dataclasses.dataclass
class Sample:
    own: int  # utime + stime, ticks
    reaped: int  # cutime + cstime: what its exited children used
    group: int
    parent: int


def sample(pids: Iterable[int]) -> dict[int, Sample]:
    found = {}
    for pid in pids:
        stat = _stat(pid)
        if stat is not None:
            own = int(stat[11]) + int(stat[12])
            reaped = int(stat[13]) + int(stat[14])
            found[pid] = Sample(own, reaped, int(stat[2]), int(stat[1]))
    return found


def idle_cpu(system: System, seconds: float) -> dict[str, float]:
    """CPU seconds per label used over `seconds` of quiet, sampled every second.

    A process that appears meanwhile counts from zero. One that exits counts what
    it was last seen using; its parent's reaped time then counts only the rest
    (children never seen, such as PostgreSQL's short-lived autovacuum workers).
    """
    roots = set(system.groups()) | {system.postmaster()}
    if system.launcher is not None:
        roots.add(system.launcher.pid)
    first = sample(family(roots))
    last = dict(first)
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(1.0, left))
        last.update(sample(family(roots)))
    alive = {int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit()}
    zero = Sample(0, 0, 0, 0)
    ticks = {}
    for pid, end in last.items():
        begin = first.get(pid, zero)
        ticks[pid] = end.own - begin.own + end.reaped - begin.reaped
    for pid, end in last.items():
        if pid not in alive and end.parent in ticks:  # reaped: not counted twice
            ticks[end.parent] -= end.own + end.reaped
    labels = system.groups()
    postmaster = system.postmaster()
    used: dict[str, float] = {}
    for pid, count in ticks.items():
        if pid == postmaster or last[pid].parent == postmaster:
            label = "postgres"
        elif system.launcher is not None and pid == system.launcher.pid:
            label = "launcher"
        else:
            label = labels.get(last[pid].group, "other")
        used[label] = used.get(label, 0.0) + count / TICKS
    return used


# --- emit -> handler -----------------------------------------------------------------


def latency(system: System, events: int, gap: float) -> list[float]:
    """Seconds from emit to handler of `events` probes spaced about `gap` apart."""
    ensure_topics(system.bootstrap, [TOPIC])
    engine = sa.create_engine(system.database_url("storage"))
    arrived: dict[str, float] = {}
    emitted: dict[str, float] = {}
    lock = threading.Lock()

    def handler(session: Session, envelope: Envelope) -> None:
        seconds = (utcnow() - envelope.occurred_at).total_seconds()
        with lock:
            arrived[envelope.data["probe_id"]] = seconds

    consumer = Consumer(
        group_id=f"bench-idle-{uuid.uuid4().hex[:6]}",
        bootstrap_servers=system.bootstrap,
        sessions=sessionmaker(bind=engine),
        consumers={Probe.type: handler},
        topics=[TOPIC],
        # Only how fast it joins differs from the workers' consumers.
        consumer_options={"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000},
        idle_wait_max=Settings.from_env().consumer_idle_wait_max,
    )
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not consumer.assigned:
        if time.monotonic() > deadline:
            raise SystemExit("the probe consumer was never assigned partitions")
        time.sleep(0.1)
    # The consumer subscribes from the earliest offset: the first probe also tells
    # when it reads what is new.
    warm = "warm-up"
    _emit(engine, warm, -1)
    while warm not in arrived:
        time.sleep(0.05)
    for n in range(events):
        time.sleep(random.uniform(0.5 * gap, 1.5 * gap))
        probe = uuid.uuid4().hex
        emitted[probe] = time.monotonic()
        _emit(engine, probe, n)
    deadline = time.monotonic() + 30
    while len(set(emitted) & set(arrived)) < events and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(15)
    engine.dispose()
    return [arrived[probe] for probe in emitted if probe in arrived]


def _emit(engine: sa.Engine, probe_id: str, n: int) -> None:
    with Session(engine) as session, session.begin():
        emit(session, Probe(probe_id, n))


# --- the stop --------------------------------------------------------------------------


def stop(system: System) -> tuple[float, float]:
    """SIGINT the launcher; seconds until it exited, and until nothing is left."""
    assert system.launcher is not None
    everything = family(set(system.groups()) | {system.launcher.pid})
    everything.add(system.postmaster())
    started = time.monotonic()
    system.launcher.send_signal(signal.SIGINT)
    system.launcher.wait(120)
    exited = time.monotonic() - started
    while (alive := everything & _live()) or any(
        not port_is_free(port, host) for host, port in system.ports()
    ):
        if time.monotonic() - started > 120:
            raise SystemExit(f"still running 120 s after SIGINT: {sorted(alive)}")
        time.sleep(0.05)
    return exited, time.monotonic() - started


SLOW_STOP = 5.0  # seconds: a stop slower than this keeps the logs and names the parts


def slow_stop_report(data_dir: Path) -> None:
    """Name what stopped late: each process's last line, and workers' late parts."""
    print(f"slow stop: logs kept in {data_dir / 'logs'}; the last line of each:")
    for log in sorted((data_dir / "logs").glob("*.log")):
        lines = log.read_text(errors="replace").splitlines()
        late = [line for line in lines if "still running after" in line]
        for line in late + lines[-1:]:
            print(f"  {log.stem}: {line[:200]}")


def _live() -> set[int]:
    """Processes that run (zombies are not)."""
    return {
        int(e.name)
        for e in Path("/proc").iterdir()
        if e.name.isdigit() and (s := _stat(int(e.name))) is not None and s[0] != "Z"
    }


# --- the report ------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def report_cpu(used: dict[str, float], seconds: float) -> None:
    print(f"\nidle CPU over {seconds:.0f}s, % of one core:")
    for label, cpu in sorted(used.items(), key=lambda item: -item[1]):
        print(f"  {label:<22} {100 * cpu / seconds:6.2f}")
    kinds: dict[str, float] = {}
    for label, cpu in used.items():
        kind = "workers" if "-worker-" in label else label
        if label in {spec.name for spec in APPS}:
            kind = "web (gunicorn)"
        kinds[kind] = kinds.get(kind, 0.0) + cpu
    print("  " + "-" * 29)
    for kind, cpu in sorted(kinds.items(), key=lambda item: -item[1]):
        print(f"  {kind:<22} {100 * cpu / seconds:6.2f}")
    print(f"  {'total':<22} {100 * sum(used.values()) / seconds:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="the quiet window")
    parser.add_argument("--settle", type=float, default=120, help="wait after start")
    parser.add_argument("--events", type=int, default=30, help="latency probes")
    parser.add_argument("--gap", type=float, default=2.0, help="seconds between them")
    parser.add_argument(
        "--attach", type=Path, help="data directory of a running system"
    )
    parser.add_argument("--keep", action="store_true", help="keep the data and logs")
    args = parser.parse_args()

    host = os.environ.get("CHOMIK_HOST", "127.0.0.1")
    if args.attach:
        system = System(
            args.attach,
            int(os.environ.get("EMBEDDED_PG_PORT", EMBEDDED_PG_PORT)),
            int(os.environ.get("EMBEDDED_KAFKA_PORT", EMBEDDED_KAFKA_PORT)),
            host,
        )
    else:
        system = start(host)
    try:
        time.sleep(args.settle)
        report_cpu(idle_cpu(system, args.seconds), args.seconds)
        if args.events:
            seconds = latency(system, args.events, args.gap)
            ms = [1000 * s for s in seconds]
            print(
                f"\nemit -> handler, {len(ms)} events ~{args.gap:.1f}s apart: "
                f"p50 {statistics.median(ms):.1f} ms, p99 {percentile(ms, 0.99):.1f} ms,"
                f" max {max(ms):.1f} ms"
            )
        if system.launcher is not None:
            exited, gone = stop(system)
            print(
                f"\nstop (SIGINT): launcher exited in {exited:.1f}s, "
                f"every process gone and every port free in {gone:.1f}s"
            )
            if exited > SLOW_STOP:
                args.keep = True
                slow_stop_report(system.data_dir)
    finally:
        if system.launcher is not None:
            if system.launcher.poll() is None:
                system.launcher.send_signal(signal.SIGTERM)
                system.launcher.wait(120)
            if not args.keep:
                shutil.rmtree(system.data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
