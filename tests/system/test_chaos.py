"""Faults under traffic on the whole system (`chomik run`), marker `chaos`.

One system for the module. Each test drives a short burst of buyers
(`tests.system.traffic`), injects one fault while the burst runs, lifts it,
waits until every driven order is in a final state, and then runs `chomik check`,
which must find no violated invariant. Each prints one line: the fault, orders
driven and finished, invariants checked, violations, and the seconds from lifting
the fault to a consistent system (every order final, the audit clean).

    make test-chaos        # CHOMIK_HOST=127.0.0.2 make test-chaos beside another system
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from chomik.check import Limits, audit
from chomik.infra import PostgresCluster, free_port
from chomik.launcher import Launcher
from tests.system import base_url
from tests.system.test_run import launch, wait_up
from tests.system.traffic import Counts, Traffic

# Each test bounds its own waits; the first one also waits for the system to start.
pytestmark = [pytest.mark.chaos, pytest.mark.timeout(900)]

ORDER_TTL = 8
TXCOORD_TIMEOUT = 10
# Short timers, so that every order of a burst ends within seconds; everything
# else is the development configuration `chomik run` starts with.
CHAOS_ENV = {
    "ORDER_TTL": str(ORDER_TTL),
    "PAYMENT_POLL_AFTER": "3",
    "PAYMENT_POLL_INTERVAL": "3",
    "PAYMENT_POLL_LEASE": "15",
    "PAYMENT_TTL": "40",
    "TXCOORD_RECOVERY_INTERVAL": "2",
    "TXCOORD_TIMEOUT": str(TXCOORD_TIMEOUT),
    "CARRIER_STEP_SECONDS": "1",
    "SHIPMENT_POLL_AGE": "5",
    "SHIPMENT_POLL_INTERVAL": "2",
    "REGISTER_RATE_LIMIT": "10000/hour",
    "PASSWORD_HASH_MEMORY_KIB": "8192",
    "PASSWORD_HASH_TIME_COST": "1",
    "ACCESS_TOKEN_TTL": "3600",
    "CHOMIK_READY_TIMEOUT": "500",  # a loaded CI machine starts slowly
}
GRACE = 2.0  # seconds `chomik check` lets a row disagree while its event is on its way
SETTLE = 90.0  # seconds every order of a burst gets to reach a final state


@dataclass
class Outcome:
    fault: str
    counts: Counts
    invariants: int
    violations: list[str]
    recovered_in: float

    def line(self) -> str:
        return (
            f"{self.fault:<34} driven={self.counts.driven:<3} "
            f"finished={self.counts.finished_total:<3} "
            f"invariants={self.invariants:<3} violations={len(self.violations)} "
            f"recovered in {self.recovered_in:5.1f}s"
        )


@dataclass
class System:
    """The running system: its launcher, data directory, ports and buyers."""

    launcher: subprocess.Popen[str]
    data_dir: Path
    pg_port: int
    kafka_port: int
    crash_file: Path
    traffic: Traffic
    output: list[str] = field(default_factory=list)

    def pid(self, label: str) -> int:
        """The pid the launcher recorded for one of its children (`run/<label>.pid`)."""
        return int((self.data_dir / "run" / f"{label}.pid").read_text().split()[0])

    def restarted(self, label: str, old: int, timeout: float = 30.0) -> float:
        """Wait until the launcher runs `label` again under a new pid; seconds taken."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            try:
                pid = self.pid(label)
            except (OSError, ValueError, IndexError):
                pid = old
            if pid != old and Path(f"/proc/{pid}").exists():
                return time.monotonic() - started
            time.sleep(0.1)
        raise AssertionError(f"{label} was not restarted: {''.join(self.output[-5:])}")

    def audit(self) -> tuple[int, list[str]]:
        """What `chomik check` does (in this process: a loaded machine starts a new
        interpreter slowly): invariants checked and the violations found."""
        report = audit(
            Launcher(environ={}, base_dir=self.data_dir).database_urls(self.pg_port),
            limits=Limits(grace=GRACE, txcoord_timeout=TXCOORD_TIMEOUT),
            kafka=f"127.0.0.1:{self.kafka_port}",
        )
        return len(report.checked), [v.line() for v in report.violations]


@pytest.fixture(scope="module")
def system() -> Iterator[System]:
    # Under the system's temporary directory and mode 755: `postgres` must reach it.
    data_dir = Path(tempfile.mkdtemp(prefix="chomik-chaos-"))
    data_dir.chmod(0o755)
    crash_file = data_dir / "txcoord-crash"
    pg_port, kafka_port = free_port(), free_port()
    env = {
        **CHAOS_ENV,
        "EMBEDDED_PG_PORT": str(pg_port),
        "EMBEDDED_KAFKA_PORT": str(kafka_port),
        "TXCOORD_CRASH_FILE": str(crash_file),
    }
    launcher = launch(env, str(data_dir))
    output: list[str] = []
    try:
        output.extend(wait_up(launcher, timeout=600))
        # Keep reading: a full pipe would stall the launcher (it says each restart).
        reader = threading.Thread(
            target=lambda: output.extend(iter(launcher.stdout.readline, "")),
            daemon=True,
        )
        reader.start()
        traffic = Traffic(base_url(17000), base_url(17006), seed=15, buyers=4)
        traffic.setup()
        yield System(
            launcher, data_dir, pg_port, kafka_port, crash_file, traffic, output
        )
    finally:
        launcher.send_signal(signal.SIGTERM)
        launcher.wait(90)
        launcher.stdout.close()
        shutil.rmtree(data_dir, ignore_errors=True)
    assert launcher.returncode == 0, "".join(output[-20:])


@pytest.fixture(scope="module")
def table(request: pytest.FixtureRequest) -> Iterator[list[Outcome]]:
    outcomes: list[Outcome] = []
    yield outcomes
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and outcomes:
        reporter.write_line("")
        for outcome in outcomes:
            reporter.write_line(outcome.line())


def under_traffic(
    system: System,
    table: list[Outcome],
    fault: str,
    inject: Callable[[], None],
    *,
    orders: int = 12,
    seconds: float = 6.0,
) -> Outcome:
    """A burst with `inject` run beside it; then the recovery wait and the audit.

    `inject` returns once the fault is lifted; recovery is timed from there.
    """
    counts: list[Counts] = []
    burst = threading.Thread(
        target=lambda: counts.append(system.traffic.burst(orders, seconds))
    )
    burst.start()
    try:
        inject()
    finally:
        lifted = time.monotonic()
        burst.join()
    (driven,) = counts
    settled = system.traffic.settle(driven, timeout=SETTLE)
    final = time.monotonic() - lifted
    deadline = time.monotonic() + 20
    audits = 1
    invariants, violations = system.audit()
    while violations and time.monotonic() < deadline:  # what is still on its way
        time.sleep(1)
        audits += 1
        invariants, violations = system.audit()
    outcome = Outcome(fault, driven, invariants, violations, time.monotonic() - lifted)
    table.append(outcome)
    timing = f"  every order final {final:.1f}s after the fault, {audits} audit(s)"
    print(outcome.line(), driven.line(), timing, *violations, sep="\n")
    assert driven.errors == [], driven.errors
    assert driven.driven > 0
    assert settled, driven.line()
    assert violations == []
    return outcome


def kill(system: System, label: str, *, after: float) -> None:
    """SIGKILL one child of the launcher `after` seconds in; wait for its restart."""
    time.sleep(after)
    pid = system.pid(label)
    os.kill(pid, signal.SIGKILL)
    system.restarted(label, pid)


def faults(system: System, target: str, **switches: float) -> None:
    """Set a stand-in's fault switches (its test-only admin endpoint)."""
    port = {"bank": 17006, "carrier": 17005}[target]
    url = f"{base_url(port)}/api/v1/admin/faults"
    answer = requests.put(url, json=switches, timeout=10)
    assert answer.status_code == 200, answer.text


def no_faults(target: str) -> None:
    port = {"bank": 17006, "carrier": 17005}[target]
    requests.delete(
        f"{base_url(port)}/api/v1/admin/faults", timeout=10
    ).raise_for_status()


def test_a_payment_worker_killed_while_it_polls_the_bank(system, table):
    # Callbacks held back, so the poller is what finds the results.
    faults(system, "bank", delay=6)

    def inject():
        try:
            kill(system, "payment-worker-1", after=4.5)
        finally:
            no_faults("bank")

    under_traffic(system, table, "payment worker SIGKILL mid-poll", inject)


def test_an_orders_worker_killed_while_it_expires_orders(system, table):
    under_traffic(
        system, table, "orders worker SIGKILL mid-expiry",
        lambda: kill(system, "orders-worker-1", after=ORDER_TTL + 0.5),
    )  # fmt: skip


def test_the_delivery_worker_killed_while_it_consumes(system, table):
    under_traffic(
        system, table, "delivery worker SIGKILL mid-consume",
        lambda: kill(system, "delivery-worker-1", after=2.5),
    )  # fmt: skip


def gunicorn_workers(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children]


def test_a_gateway_web_worker_killed_mid_request(system, table):
    def inject():
        time.sleep(1.5)
        master = system.pid("gateway")
        before = gunicorn_workers(master)
        for pid in before:  # both: whichever holds the requests in flight
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not set(gunicorn_workers(master)) - set(before):
            assert time.monotonic() < deadline, "gunicorn did not start a worker"
            time.sleep(0.1)

    under_traffic(system, table, "gateway web workers SIGKILL", inject)


def test_the_whole_gateway_web_process_killed(system, table):
    under_traffic(
        system, table, "gateway web process SIGKILL",
        lambda: kill(system, "gateway", after=1.5),
    )  # fmt: skip


def test_the_broker_stopped_for_15_seconds(system, table):
    # SIGSTOP: the broker stops answering and its clients time out, as when its
    # machine hangs or the network to it is cut; SIGCONT brings it back with its
    # state. (Tansu keeps messages in memory, so a killed one would come back
    # empty, which a real, replicated Kafka does not.)
    def inject():
        time.sleep(1.0)
        broker = system.pid("tansu")
        os.kill(broker, signal.SIGSTOP)
        try:
            time.sleep(15)
        finally:
            os.kill(broker, signal.SIGCONT)

    under_traffic(system, table, "broker stopped 15 s", inject, seconds=12)


def test_the_broker_killed(system, table):
    # SIGKILL: the embedded Tansu comes back empty, on the same port. `chomik run`
    # stops the workers, starts it, makes what the outboxes sent since the dead one
    # started pending again, and starts the workers; consumers skip what they had.
    def inject():
        time.sleep(2.0)
        broker = system.pid("tansu")
        os.kill(broker, signal.SIGKILL)
        system.restarted("tansu", broker)

    under_traffic(system, table, "broker SIGKILL", inject, seconds=10)


def test_the_bank_drops_duplicates_and_reorders_callbacks(system, table):
    def inject():
        faults(system, "bank", drop=0.3, duplicate=0.3, reorder=0.3)
        try:
            time.sleep(6)
        finally:
            no_faults("bank")

    under_traffic(system, table, "bank drops/dups/reorders 30 %", inject, orders=16)


def test_the_carrier_down_for_20_seconds(system, table):
    def inject():
        time.sleep(1.0)
        faults(system, "carrier", unavailable_for=20)
        try:
            time.sleep(20)
        finally:
            no_faults("carrier")

    under_traffic(system, table, "carrier down 20 s", inject, seconds=12)


@pytest.mark.parametrize("point", ["after_decision", "before_decision"])
def test_the_process_applying_a_payment_result_killed_between_the_phases(
    system, table, point
):
    def inject():
        workers = {
            system.pid(label): label
            for label in ("payment-worker-1", "payment-worker-2")
        }
        system.crash_file.write_text(point)
        deadline = time.monotonic() + 30
        while system.crash_file.exists():  # renamed away by the one that crashed
            assert time.monotonic() < deadline, f"no payment result reached {point}"
            time.sleep(0.1)
        (taken,) = system.crash_file.parent.glob(f"{system.crash_file.name}.*")
        pid = int(taken.suffix[1:])
        taken.unlink()
        system.restarted(workers[pid], pid)

    under_traffic(system, table, f"txcoord crash {point}", inject)


def test_the_postgresql_cluster_restarted(system, table):
    def inject():
        time.sleep(1.5)
        cluster = PostgresCluster(base_dir=system.data_dir / "pg", port=system.pg_port)
        cluster.stop()
        cluster.start()

    under_traffic(system, table, "PostgreSQL restart", inject)
