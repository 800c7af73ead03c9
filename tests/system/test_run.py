"""`chomik run` brings the whole system up and takes all of it down again."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import requests

from chomik.apps import APPS
from chomik.infra import free_port, port_is_free
from tests.system import HOST, base_url, port_free

pytestmark = pytest.mark.system


def descendants(pid):
    """Every live process below pid (children start their own sessions)."""
    children = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # it may be gone between the two looks
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def launch(env_extra, data_dir):
    env = {k: v for k, v in os.environ.items() if not k.endswith("_DATABASE_URL")}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env.update(CHOMIK_DATA_DIR=data_dir, **env_extra)
    return subprocess.Popen(
        [sys.executable, "-m", "chomik.cli", "run"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


@pytest.fixture
def data_dir():
    """A data directory for the launcher (reachable by `postgres`), removed after."""
    path = tempfile.mkdtemp(prefix="chomik-run-")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def ports():
    return {
        "EMBEDDED_PG_PORT": str(free_port()),
        "EMBEDDED_KAFKA_PORT": str(free_port()),
    }


def wait_up(launcher, timeout=150):
    """Read the launcher's output until it says it is up; return the lines."""
    lines = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = launcher.stdout.readline()
        assert line, f"launcher exited early: {''.join(lines)}"
        lines.append(line)
        if "Press Ctrl-C to stop" in line:
            return lines
    raise AssertionError(f"not up in {timeout}s: {''.join(lines)}")


def postmaster(data_dir):
    """The pid of the embedded PostgreSQL server (pg_ctl re-parents it to init)."""
    pid_file = Path(data_dir) / "pg" / "pgdata" / "postmaster.pid"
    return int(pid_file.read_text().split()[0])


def gone_within(pids, ports, timeout):
    """Wait until none of the pids lives and every port is free; return what is left."""
    deadline = time.monotonic() + timeout
    while True:
        left = [pid for pid in pids if alive(pid)]
        left += [f"port {port}" for port in ports if not port_free(port)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def test_a_killed_launcher_takes_everything_with_it_and_the_next_start_works(
    ports, data_dir
):
    for spec in APPS:
        assert port_is_free(spec.port, HOST), f"port {spec.port} busy before the test"
    every_port = [spec.port for spec in APPS] + [int(p) for p in ports.values()]
    first = launch(ports, data_dir)
    try:
        wait_up(first)
        family = descendants(first.pid) | {postmaster(data_dir)}
        assert len(family) >= len(APPS) + 3  # web processes, workers, Tansu, ...
        first.kill()
        first.wait(10)
        first.stdout.close()
        assert gone_within(family, every_port, timeout=30) == []
    finally:
        first.kill()

    second = launch(ports, data_dir)
    try:
        wait_up(second)
        for spec in APPS:
            response = requests.get(f"{base_url(spec.port)}/health/ready", timeout=5)
            assert response.status_code == 200, spec.name
        family = descendants(second.pid) | {postmaster(data_dir)}
    finally:
        second.send_signal(signal.SIGTERM)
        output = second.communicate(timeout=60)[0]
    assert second.returncode == 0, output
    assert gone_within(family, every_port, timeout=5) == []


def watchdog_of(launcher):
    """The launcher's watchdog child (chomik.watchdog)."""
    for pid in descendants(launcher.pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"chomik.watchdog" in cmdline:
            return pid
    raise AssertionError("the launcher runs no watchdog")


def test_the_next_start_stops_what_a_killed_launcher_and_its_watchdog_left(
    ports, data_dir
):
    served = [spec.port for spec in APPS] + [int(ports["EMBEDDED_KAFKA_PORT"])]
    every_port = [*served, int(ports["EMBEDDED_PG_PORT"])]
    first = launch(ports, data_dir)
    try:
        wait_up(first)
        server = postmaster(data_dir)
        guard = watchdog_of(first)
        children = descendants(first.pid) - {guard}
        os.kill(guard, signal.SIGKILL)
        first.kill()
        first.wait(10)
        first.stdout.close()
        # The launcher's own children go by their parent-death signal ...
        assert gone_within(children, served, timeout=30) == []
        # ... but the server pg_ctl daemonized has nobody left to stop it.
        assert alive(server)
    finally:
        first.kill()

    second = launch(ports, data_dir)
    try:
        lines = wait_up(second)
        leftovers = [line for line in lines if "earlier run left running" in line]
        assert leftovers, "".join(lines)
        assert "postgres" in leftovers[0]
        assert not alive(server)
        for spec in APPS:
            response = requests.get(f"{base_url(spec.port)}/health/ready", timeout=5)
            assert response.status_code == 200, spec.name
        family = descendants(second.pid) | {postmaster(data_dir)}
    finally:
        second.send_signal(signal.SIGTERM)
        output = second.communicate(timeout=60)[0]
    assert second.returncode == 0, output
    assert gone_within(family, every_port, timeout=5) == []


GATEWAY = f"{base_url(17000)}/api/v1"


def signed_up(role):
    """Register and log in a new user of `role` through the gateway; auth headers."""
    email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    account = {"email": email, "password": "a long password", "name": role.title()}
    answer = requests.post(
        f"{GATEWAY}/auth/register", json={**account, "role": role}, timeout=10
    )
    assert answer.status_code == 201, answer.text
    login = {"email": email, "password": account["password"]}
    tokens = requests.post(f"{GATEWAY}/auth/login", json=login, timeout=10).json()
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def logout_is_refused_by_every_gateway_worker():
    """A logged-out token is refused from the next request on, whichever worker."""
    buyer = signed_up("buyer")
    # Every worker's first check starts its list; once confirmed, it answers.
    for _ in range(20):
        assert requests.get(f"{GATEWAY}/auth/me", headers=buyer, timeout=10).ok
    time.sleep(3)
    out = requests.post(f"{GATEWAY}/auth/logout", headers=buyer, timeout=10)
    assert out.status_code == 204, out.text
    # New connections: the gateway's workers take them in turn.
    answers = [
        requests.get(f"{GATEWAY}/auth/me", headers=buyer, timeout=10).status_code
        for _ in range(40)
    ]
    assert answers == [401] * 40


def order_and_cancel_through_the_gateway():
    """A seller lists, a buyer orders (twice, one key), cancels; the stock comes back."""
    seller, buyer = signed_up("seller"), signed_up("buyer")
    product = requests.post(
        f"{GATEWAY}/products",
        headers=seller,
        json={
            "title": "Air Max 90", "brand": "Nike", "model": "Air Max 90",
            "size": "42", "color": "white", "condition": "new",
            "price": "129.90", "currency": "RUB", "quantity": 3,
        },
        timeout=10,
    )  # fmt: skip
    assert product.status_code == 201, product.text
    product_id = product.json()["id"]
    address = requests.post(
        f"{GATEWAY}/addresses",
        headers=buyer,
        json={
            "recipient": "Ann Buyer", "phone": "+79161234567", "country": "RU",
            "city": "Moscow", "street": "Tverskaya 1", "postal_code": "125009",
        },
        timeout=10,
    )  # fmt: skip
    assert address.status_code == 201, address.text
    body = {
        "items": [{"product_id": product_id, "quantity": 2}],
        "address_id": address.json()["id"],
    }
    headers = {**buyer, "Idempotency-Key": str(uuid.uuid4())}
    placed = requests.post(f"{GATEWAY}/orders", headers=headers, json=body, timeout=10)
    assert placed.status_code == 201, placed.text
    order = placed.json()
    assert (order["status"], order["total"]) == ("AWAITING_PAYMENT", "259.80")
    again = requests.post(f"{GATEWAY}/orders", headers=headers, json=body, timeout=10)
    assert (again.status_code, again.json()["id"]) == (200, order["id"])

    def available():
        answer = requests.get(f"{GATEWAY}/products/{product_id}", timeout=10)
        return answer.json()["available"]

    assert available() == 1
    cancelled = requests.post(
        f"{GATEWAY}/orders/{order['id']}/cancel", headers=buyer, timeout=10
    )
    assert cancelled.json()["status"] == "CANCELLED", cancelled.text
    # order.cancelled travels through the outbox, the broker and storage's worker.
    deadline = time.monotonic() + 60
    while available() != 3:
        assert time.monotonic() < deadline, (
            "the cancelled order's stock never came back"
        )
        time.sleep(0.5)


def test_run_brings_every_service_up_and_sigterm_leaves_nothing_behind(ports, data_dir):
    for spec in APPS:
        assert port_is_free(spec.port, HOST), f"port {spec.port} busy before the test"
    launcher = launch(ports, data_dir)
    lines = []
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            line = launcher.stdout.readline()
            assert line, f"launcher exited early: {''.join(lines)}"
            lines.append(line)
            if "Press Ctrl-C to stop" in line:
                break
        for spec in APPS:
            response = requests.get(f"{base_url(spec.port)}/health/ready", timeout=5)
            assert response.status_code == 200, spec.name
        # Every worker runs (relay, consumers, jobs) and serves its own metrics.
        worker_metrics = [line.split()[-1] for line in lines if " metrics http" in line]
        assert len(worker_metrics) == sum(s.worker_replicas for s in APPS if s.worker)
        for url in worker_metrics:
            assert "outbox_pending" in requests.get(url, timeout=5).text
        order_and_cancel_through_the_gateway()
        logout_is_refused_by_every_gateway_worker()
        family = descendants(launcher.pid)
        assert len(family) >= len(APPS) + 2  # web processes, PostgreSQL, Tansu at least
    finally:
        launcher.send_signal(signal.SIGTERM)
        launcher.send_signal(signal.SIGINT)  # an impatient second signal
        output = launcher.communicate(timeout=60)[0]
    assert launcher.returncode == 0, output
    time.sleep(0.5)
    assert [pid for pid in family if alive(pid)] == []
    for port in [spec.port for spec in APPS] + [int(p) for p in ports.values()]:
        assert port_free(port), f"port {port} still taken"


def test_a_taken_port_is_a_one_line_error(ports, data_dir):
    with socket.socket() as blocker:
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind((HOST, 17003))
        blocker.listen()
        launcher = launch(ports, data_dir)
        output = launcher.communicate(timeout=120)[0]
    assert launcher.returncode == 1
    assert "port 17003 (orders) is already in use" in output
    assert "Traceback" not in output
    for port in ports.values():
        assert port_free(int(port))
