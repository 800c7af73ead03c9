"""What the benchmarks share: starting the services as real processes on a private
cluster (web apps under gunicorn, workers), waiting for them, users through the
gateway, and the latency/throughput table rows."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import requests

from chomik import migrating
from chomik.auth import generate_key_pair
from chomik.infra import PostgresCluster, free_port

PROJECT_DIR = Path(__file__).resolve().parent.parent
PASSWORD = "benchmark password"
# Quiet logs, cheap password hashes, no rate limits in the way of a load.
QUIET = {
    "LOG_LEVEL": "WARNING",
    "PASSWORD_HASH_TIME_COST": "1",
    "PASSWORD_HASH_MEMORY_KIB": "1024",
    "REGISTER_RATE_LIMIT": "10000/hour",
    "LOGIN_RATE_LIMIT": "10000/minute",
    "LOGIN_ADDRESS_RATE_LIMIT": "10000/minute",
}


def _spawn(
    argv: list[str], env: Mapping[str, str], log: Path
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "chomik.cli", *argv],
            cwd=PROJECT_DIR, env=dict(env), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def start_web(
    app: str, port: int, env: Mapping[str, str], log: Path
) -> subprocess.Popen[bytes]:
    """`chomik web <app>` on `port` (gunicorn), its output in `log`."""
    return _spawn(["web", app, "--port", str(port)], env, log)


def start_worker(
    app: str, env: Mapping[str, str], log: Path
) -> subprocess.Popen[bytes]:
    """`chomik worker <app>`, its output in `log`."""
    return _spawn(["worker", app], env, log)


def wait_ready(
    base: str,
    timeout: float = 180,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Wait until `base/health/ready` answers 200 (and `process` is still alive)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"{base}: the process exited ({process.returncode})")
        try:
            if requests.get(f"{base}/health/ready", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
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
        try:
            wait_ready(url)
        except SystemExit:
            print((base / f"{name}.log").read_text()[-3000:], file=sys.stderr)
            raise
    return services


def register(gateway: str, email: str, role: str) -> str:
    """Register and log in one user through the gateway; return an access token."""
    requests.post(
        f"{gateway}/api/v1/auth/register",
        json={"email": email, "password": PASSWORD, "name": role, "role": role},
        timeout=30,
    ).raise_for_status()
    response = requests.post(
        f"{gateway}/api/v1/auth/login",
        json={"email": email, "password": PASSWORD},
        timeout=30,
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def load(
    action: Callable[[int, str], None], total: int, concurrency: int
) -> tuple[list[float], float]:
    """Run `action(thread_index, fresh_key)` `total` times from `concurrency`
    threads; return the latencies and the wall time (exit on any failure)."""
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(total))
    errors: list[str] = []

    def worker(index: int) -> None:
        mine = []
        while True:
            with lock:
                if next(counter, None) is None:
                    break
            start = time.perf_counter()
            try:
                action(index, uuid.uuid4().hex)
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(repr(exc))
            mine.append(time.perf_counter() - start)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise SystemExit(f"{len(errors)} failed calls, first: {errors[0]}")
    return latencies, elapsed


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def measure(
    name: str, run: Callable[[], tuple[list[float], float]]
) -> dict[str, float]:
    """Run a load, print `name, count, p50 ms, p99 ms, per second`; return them."""
    latencies, elapsed = run()
    row = {
        "p50": percentile(latencies, 50) * 1000,
        "p99": percentile(latencies, 99) * 1000,
        "rps": len(latencies) / elapsed,
    }
    print(
        f"{name:<22} {len(latencies):>6} {row['p50']:>9.2f} {row['p99']:>9.2f} "
        f"{row['rps']:>9.1f}"
    )
    return row
