"""`chomik run`: the whole system on one machine, with embedded PostgreSQL and Kafka."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import requests

from chomik import migrating, monitoring, watchdog
from chomik.apps import APPS, AppSpec
from chomik.infra import (
    InfraError,
    KafkaBroker,
    PostgresCluster,
    RunRecords,
    default_base_dir,
    die_with_parent,
    ensure_databases,
    exclusive,
    free_port,
    port_is_free,
    stop_process,
)
from chomik.settings import EMBEDDED_KAFKA_PORT, EMBEDDED_PG_PORT

PROJECT_DIR = Path(__file__).resolve().parent.parent
# Secrets every process of one machine must share. The code's defaults are
# public, so `chomik run` makes its own on first start, kept in the data
# directory like the signing key; a value set in the environment wins.
GENERATED_SECRETS = (
    "SERVICE_TOKEN_SECRET",
    "BANK_CALLBACK_SECRETS",
    "CARRIER_CALLBACK_SECRETS",
)


class Shutdown(Exception):  # noqa: N818 - a request to stop, not an error
    """SIGTERM or SIGINT arrived."""


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    # One-shot: a second Ctrl-C or SIGTERM while stopping would interrupt the
    # stop and leave children running with nobody to stop them.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise Shutdown(signal.Signals(signum).name)


def database_url_var(name: str) -> str:
    """The variable naming one database's URL, e.g. ORDERS_DATABASE_URL."""
    return f"{name.upper()}_DATABASE_URL"


@dataclass
class Restarts:
    """When each child died, how often it was restarted, and when it starts again.

    The delay before a restart doubles with each death inside `window` (from
    `backoff` up to `max_backoff`); the `limit`-th death inside it ends the run.
    """

    limit: int = 5
    window: float = 60.0
    backoff: float = 0.5
    max_backoff: float = 8.0
    deaths: dict[str, list[float]] = field(default_factory=dict)
    count: dict[str, int] = field(default_factory=dict)
    due: dict[str, float] = field(default_factory=dict)

    def died(self, label: str, now: float) -> float | None:
        """Record a death; the delay before the restart, or None to give up."""
        recent = [t for t in self.deaths.get(label, []) if now - t < self.window]
        recent.append(now)
        self.deaths[label] = recent
        if len(recent) >= self.limit:
            return None
        self.count[label] = self.count.get(label, 0) + 1
        delay = min(self.backoff * 2.0 ** (len(recent) - 1), self.max_backoff)
        self.due[label] = now + delay
        return delay


WORKER_LABEL = "-worker-"  # in the label of each worker process: `orders-worker-1`
BROKER_STARTED = "tansu.started"  # in the run records: when the embedded broker began


@dataclass
class Launcher:
    """Starts infrastructure and processes, and stops every one of them.

    Every child dies with the launcher: each gets a parent-death signal, and
    what it starts is recorded under `run/` for the watchdog and the next start
    (see `owning`).
    """

    environ: Mapping[str, str]
    base_dir: Path
    children: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    metrics: dict[str, str] = field(default_factory=dict)
    restarts: Restarts = field(default_factory=Restarts)
    commands: dict[str, tuple[list[str], dict[str, str]]] = field(default_factory=dict)
    broker: KafkaBroker | None = None  # the embedded one, started again if it dies
    broker_started_at: dt.datetime = field(
        default_factory=lambda: dt.datetime.now(dt.UTC)
    )
    urls: dict[str, str] = field(default_factory=dict)  # each database's, once started
    lost_since: dt.datetime | None = None  # the last run's broker's start, if embedded

    @property
    def host(self) -> str:
        """The loopback address every process listens on and is reached at."""
        return self.environ.get("CHOMIK_HOST", "127.0.0.1")

    @property
    def log_dir(self) -> Path:
        return self.base_dir / "logs"

    @property
    def records(self) -> RunRecords:
        return RunRecords(self.base_dir / "run")

    def database_urls(self, pg_port: int) -> dict[str, str]:
        """Each database's URL: from the environment, else on the embedded cluster."""
        return {
            name: self.environ.get(database_url_var(name))
            or f"postgresql+psycopg2://postgres@127.0.0.1:{pg_port}/chomik_{name}"
            for name in migrating.DATABASES
        }

    @contextlib.contextmanager
    def infrastructure(self) -> Iterator[tuple[dict[str, str], str]]:
        """Embedded PostgreSQL and Kafka, each unless the settings name a real one."""
        pg_port = int(self.environ.get("EMBEDDED_PG_PORT", EMBEDDED_PG_PORT))
        kafka_port = int(self.environ.get("EMBEDDED_KAFKA_PORT", EMBEDDED_KAFKA_PORT))
        external_pg = all(
            database_url_var(n) in self.environ for n in migrating.DATABASES
        )
        kafka = self.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        with contextlib.ExitStack() as stack:
            if not external_pg:
                cluster = PostgresCluster(base_dir=self.base_dir / "pg", port=pg_port)
                self.records.cluster(cluster.data_dir)
                stack.callback(self.records.forget_cluster)
                stack.callback(cluster.stop)
                cluster.start()
                say(f"postgres   127.0.0.1:{pg_port} (data {cluster.data_dir})")
            if not kafka:
                broker = KafkaBroker(
                    port=kafka_port,
                    log_path=self.log_dir / "tansu.log",
                    die_with_parent=True,
                )
                stack.callback(self.records.forget, "tansu")
                stack.callback(broker.stop)
                self.lost_since = self._previous_broker_start()
                self._start_broker(broker)
                kafka = broker.bootstrap_servers
                say(f"kafka      {kafka} (Tansu, in memory)")
            yield self.database_urls(pg_port), kafka

    def migrate(self, urls: Mapping[str, str]) -> None:
        """Create every database that is missing and migrate it to head."""
        for name, url in urls.items():
            server = url.rsplit("/", 1)[0] + "/postgres"
            ensure_databases(server, [url.rsplit("/", 1)[1].split("?")[0]])
            migrating.upgrade(name, url)

    def child_env(self, urls: Mapping[str, str], kafka: str) -> dict[str, str]:
        env = dict(self.environ)
        env.update({database_url_var(name): url for name, url in urls.items()})
        env.setdefault("KAFKA_BOOTSTRAP_SERVERS", kafka)
        env["KAFKA_BOOTSTRAP_SERVERS"] = kafka
        # The gateway makes its development key pair in the data directory on
        # first start; every service verifies tokens through the gateway's JWKS.
        env.setdefault("CHOMIK_DATA_DIR", str(self.base_dir))
        for name, value in machine_secrets(self.base_dir / "secrets").items():
            env.setdefault(name, value)
        for name, value in service_urls(self.host).items():
            env.setdefault(name, value)
        # Ctrl-C on a development machine: web workers get 2 s for their requests.
        env.setdefault("WEB_GRACEFUL_TIMEOUT", "2")
        return env

    def spawn(self, label: str, argv: list[str], env: Mapping[str, str]) -> None:
        self.commands[label] = (argv, dict(env))
        self.children.append((label, self._start(label)))

    def _start(self, label: str) -> subprocess.Popen[bytes]:
        argv, env = self.commands[label]
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / f"{label}.log").open("ab") as log:
            process = subprocess.Popen(
                argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=PROJECT_DIR,
                preexec_fn=die_with_parent(),
            )  # fmt: skip
        self.records.process(label, process.pid)
        return process

    def start_apps(self, urls: Mapping[str, str], kafka: str) -> None:
        """Start every web process and worker of the APPS table."""
        self.urls = dict(urls)
        base = self.child_env(urls, kafka)
        for spec in APPS:
            if not port_is_free(spec.port, self.host):
                raise InfraError(f"port {spec.port} ({spec.name}) is already in use")
        for spec in APPS:
            env = {**base, "DATABASE_URL": urls[spec.name]}
            env["PROMETHEUS_MULTIPROC_DIR"] = str(
                self.base_dir / "prometheus" / spec.name
            )
            argv = chomik_argv("web", spec.name, "--host", self.host)
            self.spawn(spec.name, argv, env)
            for replica in range(spec.worker_replicas if spec.worker else 0):
                label = f"{spec.name}{WORKER_LABEL}{replica + 1}"
                worker_env = {
                    **env,
                    "SCHEDULER_REPLICA_ID": label,
                    "METRICS_PORT": str(free_port()),
                }
                self.metrics[label] = worker_env["METRICS_PORT"]
                worker_env.pop("PROMETHEUS_MULTIPROC_DIR")
                self.spawn(label, chomik_argv("worker", spec.name), worker_env)

    def wait_ready(self, timeout: float) -> None:
        """Wait until every web process answers 200 on /health/ready."""
        pending = {spec.name: spec for spec in APPS}
        deadline = time.monotonic() + timeout
        while pending:
            self.check_children()
            for name, spec in list(pending.items()):
                if _ready(self.host, spec):
                    del pending[name]
            if time.monotonic() > deadline:
                raise InfraError(
                    f"not ready after {timeout:.0f}s: {', '.join(pending)}"
                )
            time.sleep(0.3)

    def check_children(self) -> None:
        """Fail with the child's last log line when one has exited."""
        for label, process in self.children:
            if process.poll() is not None:
                tail = _tail(self.log_dir / f"{label}.log")
                raise InfraError(
                    f"{label} exited with code {process.returncode}: {tail}"
                )

    def supervise(self) -> None:
        """Restart each child that has exited, after a backoff; fail when one keeps dying.

        A process of a deployment that dies is started again by its orchestrator
        (a pod's restart policy, compose's `restart:`); this is that policy for
        `chomik run`. Whatever the dead child left in its process group (a
        gunicorn master's workers) is killed first, so the new one finds its
        port free.
        """
        now = time.monotonic()
        self._restart_dead_broker(now)
        for index, (label, process) in enumerate(self.children):
            if process.poll() is None:
                continue
            due = self.restarts.due.get(label)
            if due is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                tail = _tail(self.log_dir / f"{label}.log")
                delay = self.restarts.died(label, now)
                if delay is None:
                    raise InfraError(
                        f"{label} exited {self.restarts.limit} times in "
                        f"{self.restarts.window:.0f}s (last code {process.returncode}), "
                        f"not restarting it: {tail}"
                    )
                say(
                    f"{label} exited with code {process.returncode}; restart "
                    f"{self.restarts.count[label]} in {delay:.1f}s (last line: {tail})"
                )
            elif now >= due:
                del self.restarts.due[label]
                self.children[index] = (label, self._start(label))

    def _restart_dead_broker(self, now: float) -> None:
        """Start the embedded broker again if it died, and every worker with it.

        It kept everything in memory: its topics, the groups' offsets, the events.
        The workers are stopped first (a consumer that reached the new broker and
        died without leaving it would hold its group up); the events sent since
        the dead broker started are made pending again (`republish`: each group
        skips those it applied already); then the broker and the workers start.
        """
        broker = self.broker
        if broker is None or broker.process is None or broker.process.poll() is None:
            return
        code = broker.process.returncode
        if self.restarts.died("tansu", now) is None:
            raise InfraError(
                f"kafka exited {self.restarts.limit} times in "
                f"{self.restarts.window:.0f}s (last code {code}), not restarting it"
            )
        say(f"kafka exited with code {code}; stopping every worker, starting it "
            "again, sending again what it held")  # fmt: skip
        workers = [
            (index, label, process)
            for index, (label, process) in enumerate(self.children)
            if WORKER_LABEL in label
        ]
        for _index, _label, process in workers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for _index, _label, process in workers:
            stop_process(process)
        lost_since = self.broker_started_at
        broker.process = None
        self._start_broker(broker)
        self._republish(lost_since)
        for index, label, _process in workers:
            self.restarts.due.pop(label, None)  # one waiting to restart: now
            self.children[index] = (label, self._start(label))

    def _start_broker(self, broker: KafkaBroker) -> None:
        self.broker_started_at = dt.datetime.now(dt.UTC)
        broker.start()
        assert broker.process is not None
        self.records.process("tansu", broker.process.pid)
        (self.records.directory / BROKER_STARTED).write_text(
            self.broker_started_at.isoformat()
        )
        self.broker = broker

    def _previous_broker_start(self) -> dt.datetime | None:
        """When the embedded broker of the last run started, if one did."""
        try:
            text = (self.records.directory / BROKER_STARTED).read_text().strip()
            return dt.datetime.fromisoformat(text)
        except (OSError, ValueError):
            return None

    def resend_lost(self, urls: Mapping[str, str]) -> None:
        """Before the workers start: the events the last run's embedded broker got
        were lost with it, those not consumed yet too; send them again."""
        if self.lost_since is not None:
            self.urls = dict(urls)
            self._republish(self.lost_since)

    def _republish(self, since: dt.datetime) -> None:
        """Make the events every database sent since `since` pending again."""
        # Imported here: importing messaging declares the kit's metrics (see cli).
        from chomik.messaging.outbox import republish_all

        # A few seconds more than the dead broker lived, for the clocks' sake: an
        # event sent twice is skipped by its consumers.
        seconds = (dt.datetime.now(dt.UTC) - since).total_seconds() + 5
        for name, count in republish_all(self.urls, seconds).items():
            if count:
                say(f"{name}: {count} event(s) to send again")

    def stop(self) -> None:
        """Stop every child: Ctrl-C for each, then SIGTERM to its group, SIGKILL.

        SIGINT is gunicorn's quick stop, which its master passes on to its own
        workers: on SIGTERM they would keep kept-alive connections (the proxy's,
        Prometheus') open for two more seconds. A worker stops on either.
        """
        for _label, process in reversed(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGINT)
        for label, process in reversed(self.children):
            stop_process(process)
            self.records.forget(label)
        self.children.clear()


def machine_secrets(directory: Path) -> dict[str, str]:
    """Each of GENERATED_SECRETS, read from `directory`, made there when missing."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    found = {}
    for name in GENERATED_SECRETS:
        path = directory / name.lower()
        with contextlib.suppress(FileExistsError):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as file:
                file.write(secrets.token_urlsafe(32))
        found[name] = path.read_text().strip()
    return found


@contextlib.contextmanager
def owning(base_dir: Path) -> Iterator[None]:
    """Own the data directory: stop what an earlier run left, watch over this one.

    A lock refuses a second launcher on the same directory. The watchdog holds
    the lock too, so the next start waits until it has cleaned up after a crash.
    """
    records = RunRecords(base_dir / "run")
    # The watchdog's clean-up takes at most a stop of every group (15 s) and a
    # PostgreSQL shutdown: wait for it rather than fail.
    with exclusive(
        records.directory / "launcher.lock",
        what=f"chomik run on {base_dir}",
        timeout=90.0,
    ) as lock:
        left = records.stop_all()
        if left:
            say(f"stopped what an earlier run left running: {', '.join(left)}")
        guard = _start_watchdog(records.directory, lock)
        try:
            yield
        finally:
            assert guard.stdin is not None
            guard.stdin.close()  # the watchdog stops whatever is still recorded
            guard.wait()


def _start_watchdog(run_dir: Path, lock: int) -> subprocess.Popen[bytes]:
    """Start the watchdog and wait until it watches (see chomik.watchdog)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "watchdog.log").open("ab") as log:
        guard = subprocess.Popen(
            [sys.executable, "-m", "chomik.watchdog", str(run_dir)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
            start_new_session=True, pass_fds=(lock,), cwd=PROJECT_DIR,
        )  # fmt: skip
    assert guard.stdin is not None
    assert guard.stdout is not None
    with guard.stdout:
        readable, _, _ = select.select([guard.stdout], [], [], 30.0)
        ready = readable and guard.stdout.readline().decode().strip()
    if ready != watchdog.READY:
        guard.stdin.close()
        stop_process(guard)
        raise InfraError(f"the watchdog did not start (log: {run_dir}/watchdog.log)")
    return guard


def chomik_argv(*args: str) -> list[str]:
    """Run a `chomik` subcommand with this interpreter."""
    return [sys.executable, "-m", "chomik.cli", *args]


def service_urls(host: str) -> dict[str, str]:
    """Where the processes of one `chomik run` reach each other, all on `host`."""
    base = {spec.name: f"http://{host}:{spec.port}" for spec in APPS}
    api = f"{base['gateway']}/api/v1"
    return {
        **{
            f"{name.upper()}_URL": url
            for name, url in base.items()
            if name != "gateway"
        },
        "JWKS_URL": f"{api}/auth/jwks",
        "BANK_CALLBACK_URL": f"{api}/callbacks/bank",
        "CARRIER_CALLBACK_URL": f"{api}/callbacks/carrier",
        "BANK_PUBLIC_URL": base["bank"],
        "CARRIER_PUBLIC_URL": base["carrier"],
    }


def _ready(host: str, spec: AppSpec) -> bool:
    try:
        url = f"http://{host}:{spec.port}/health/ready"
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return lines[-1][-300:] if lines else "no output"


def say(message: str) -> None:
    """A line for the person at the terminal."""
    print(message, flush=True)


def run(environ: Mapping[str, str], *, ready_timeout: float | None = None) -> int:
    """Start everything, print where it is, and stop it all on SIGTERM/SIGINT."""
    if ready_timeout is None:
        ready_timeout = float(environ.get("CHOMIK_READY_TIMEOUT", "90"))
    data_dir = environ.get("CHOMIK_DATA_DIR")
    base_dir = Path(data_dir) if data_dir else default_base_dir(PROJECT_DIR)
    launcher = Launcher(environ=environ, base_dir=base_dir)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    started = time.monotonic()
    monitor = contextlib.ExitStack()  # Prometheus over the processes, if it can run
    try:
        with owning(base_dir), launcher.infrastructure() as (urls, kafka):
            try:
                launcher.migrate(urls)
                launcher.resend_lost(urls)
                launcher.start_apps(urls, kafka)
                launcher.wait_ready(ready_timeout)
                monitor.enter_context(monitoring.watching(launcher, say=say))
                print_table(time.monotonic() - started, launcher)
                while True:
                    launcher.supervise()
                    time.sleep(0.5)
            finally:
                monitor.close()
                launcher.stop()
    except Shutdown as stop:
        say(f"stopped ({stop})")
        return 0
    except InfraError as exc:
        say(f"chomik run: {exc}")
        return 1


def print_table(elapsed: float, launcher: Launcher) -> None:
    say(f"\nChomik is up in {elapsed:.1f}s (logs in {launcher.log_dir}):")
    for spec in APPS:
        say(f"  {spec.name:<10} http://{launcher.host}:{spec.port}")
    for label, port in launcher.metrics.items():
        say(f"  {label:<18} metrics http://127.0.0.1:{port}/metrics")
    say(f"  API docs   http://{launcher.host}:{APPS[0].port}/docs")
    say("Press Ctrl-C to stop.")
