"""The embedded infrastructure the launcher and the tests run on."""

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer

from chomik.infra import (
    EPHEMERAL_RANGE,
    InfraError,
    KafkaBroker,
    RunRecords,
    exclusive,
    free_port,
)


def test_embedded_postgres_accepts_prepare_transaction(infra):
    gid = f"chomik-test-{uuid.uuid4().hex}"
    raw = infra.engine("orders").raw_connection()
    try:
        raw.autocommit = True
        cur = raw.cursor()
        cur.execute("SHOW max_prepared_transactions")
        assert int(cur.fetchone()[0]) >= 64
        cur.execute("BEGIN")
        cur.execute("SELECT 1")
        cur.execute(f"PREPARE TRANSACTION '{gid}'")
        cur.execute("SELECT count(*) FROM pg_prepared_xacts WHERE gid = %s", (gid,))
        assert cur.fetchone()[0] == 1
        cur.execute(f"ROLLBACK PREPARED '{gid}'")
        cur.execute("SELECT count(*) FROM pg_prepared_xacts WHERE gid = %s", (gid,))
        assert cur.fetchone()[0] == 0
    finally:
        raw.close()


def test_embedded_broker_round_trips_a_message(infra):
    topic = f"test.roundtrip.{uuid.uuid4().hex[:8]}"
    producer = KafkaProducer(bootstrap_servers=infra.kafka, acks="all")
    producer.send(topic, key=b"k", value=b"hello").get(timeout=10)
    producer.close()
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=infra.kafka,
        group_id=f"g-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        consumer_timeout_ms=15000,
    )
    try:
        values = [m.value for m in consumer]
    finally:
        consumer.close()
    assert values[:1] == [b"hello"]


_SLOW_ON_SIGTERM = """\
import signal, socket, sys, time
port = int(sys.argv[sys.argv.index("--listener-url") + 1].rsplit(":", 1)[1])
server = socket.create_server(("127.0.0.1", port))
def quick(*_):
    open(sys.argv[0] + ".signal", "w").write("SIGINT")
    sys.exit(0)
def slow(*_):  # Tansu, once a consumer left a group with its join pending
    open(sys.argv[0] + ".signal", "w").write("SIGTERM")
    time.sleep(5)
    sys.exit(0)
signal.signal(signal.SIGINT, quick)
signal.signal(signal.SIGTERM, slow)
while True:
    server.accept()[0].close()
"""


def stop_fake_broker(tmp_path, monkeypatch, script):
    """Start a fake Tansu running `script`, stop it; (its process, seconds taken)."""
    fake = tmp_path / "tansu"
    fake.write_text(f"#!{sys.executable}\n{script}")
    fake.chmod(0o755)
    monkeypatch.setattr("chomik.infra.tansu_binary", lambda: str(fake))
    broker = KafkaBroker(port=free_port(), log_path=tmp_path / "tansu.log")
    broker.start()
    process = broker.process
    started = time.monotonic()
    broker.stop()
    return process, time.monotonic() - started


def test_the_broker_is_stopped_with_its_quick_stop(tmp_path, monkeypatch):
    # On SIGTERM Tansu waits up to 5 s before exiting when a consumer left a group
    # while its join was pending (measured: 5.0 s); on SIGINT it exits at once.
    # The launcher stops it after the apps, so that wait was added to a Ctrl-C.
    process, took = stop_fake_broker(tmp_path, monkeypatch, _SLOW_ON_SIGTERM)
    assert took < 3.0
    assert process.returncode == 0
    assert (tmp_path / "tansu.signal").read_text() == "SIGINT"


def test_a_broker_that_lingers_on_sigint_is_killed_soon(tmp_path, monkeypatch):
    # After events have flowed Tansu may wait its 5 s on SIGINT too: a Ctrl-C of
    # `chomik run` took 10.6 s (2 s of SIGINT, then 5 of SIGTERM). It keeps nothing.
    lingering = _SLOW_ON_SIGTERM.replace(
        "signal.signal(signal.SIGINT, quick)", "signal.signal(signal.SIGINT, slow)"
    )
    process, took = stop_fake_broker(tmp_path, monkeypatch, lingering)
    assert took < 2.5
    assert process.returncode == -signal.SIGKILL


def _alive(pid):
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_dead(pids, timeout=10.0):
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [pid for pid in pids if _alive(pid)]


def _group_of_two():
    """A shell leading a session of its own, with a background child."""
    process = subprocess.Popen(
        ["sh", "-c", "sleep 60 & echo $!; wait"],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    with process.stdout:
        return process, int(process.stdout.readline())


def test_stop_all_stops_each_recorded_group_with_its_children(tmp_path):
    records = RunRecords(tmp_path / "run")
    process, child = _group_of_two()
    records.process("shell", process.pid)

    assert records.stop_all() == ["shell"]

    process.wait(5)
    assert _wait_dead([child]) == []
    assert list(records.directory.iterdir()) == []
    assert records.stop_all() == []  # nothing recorded, nothing to do


def test_a_pid_reused_by_another_process_is_left_alone(tmp_path):
    records = RunRecords(tmp_path / "run")
    stranger = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        records.process("old", stranger.pid)
        pid_file = records.directory / "old.pid"
        pid, started = pid_file.read_text().split()
        pid_file.write_text(f"{pid} {int(started) - 1}\n")  # an older process's pid

        assert records.stop_all() == []
        assert stranger.poll() is None
        assert not pid_file.exists()
    finally:
        stranger.kill()
        stranger.wait()


def test_a_child_gets_its_signal_when_its_parent_is_killed():
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True
    )
    with parent.stdout:
        child = int(parent.stdout.readline())
    assert _alive(child)
    parent.kill()
    parent.wait(5)
    assert _wait_dead([child]) == []


PARENT = """
import subprocess, time
from chomik.infra import die_with_parent
child = subprocess.Popen(["sleep", "60"], preexec_fn=die_with_parent())
print(child.pid, flush=True)
time.sleep(60)
"""


def test_the_watchdog_stops_what_is_recorded_when_its_pipe_closes(tmp_path):
    records = RunRecords(tmp_path / "run")
    process, child = _group_of_two()
    records.process("shell", process.pid)
    guard = subprocess.Popen(
        [sys.executable, "-m", "chomik.watchdog", str(records.directory)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    with guard.stdout:
        assert guard.stdout.readline() == b"watching\n"
    time.sleep(0.2)
    assert process.poll() is None  # nothing happens while the pipe is open

    guard.stdin.close()  # as when the launcher dies

    assert guard.wait(15) == 0
    with guard.stderr:
        assert b"shell" in guard.stderr.read()
    process.wait(5)
    assert _wait_dead([child]) == []


def test_a_second_launcher_on_the_same_directory_is_refused(tmp_path):
    lock = tmp_path / "run" / "launcher.lock"
    refused = rf"chomik run on here \(pid {os.getpid()}\) is running"
    with exclusive(lock, what="chomik run on here"):
        second = exclusive(lock, what="chomik run on here", timeout=0)
        with pytest.raises(InfraError, match=refused), second:
            pass
    with exclusive(lock, what="chomik run on here"):  # free again
        pass


def test_chomik_run_gives_every_child_secrets_of_its_own(tmp_path):
    from chomik.launcher import GENERATED_SECRETS, Launcher
    from chomik.settings import DEV_SECRET

    def env_of(base_dir, environ=None):
        launcher = Launcher(environ=environ or {}, base_dir=base_dir)
        return launcher.child_env({"gateway": "postgresql://x/y"}, "127.0.0.1:1")

    first = env_of(tmp_path / "a")
    for name in GENERATED_SECRETS:
        assert len(first[name]) >= 32
        assert "dev-only" not in first[name]
    assert first["SERVICE_TOKEN_SECRET"] != DEV_SECRET
    assert len({first[name] for name in GENERATED_SECRETS}) == 3
    # Kept in the data directory, readable by its owner only, stable across starts.
    assert env_of(tmp_path / "a") == first
    for path in (tmp_path / "a" / "secrets").iterdir():
        assert path.stat().st_mode & 0o077 == 0
    other = env_of(tmp_path / "b")
    assert other["SERVICE_TOKEN_SECRET"] != first["SERVICE_TOKEN_SECRET"]
    # A secret set in the environment wins.
    given = env_of(tmp_path / "a", {"SERVICE_TOKEN_SECRET": "from-the-operator"})
    assert given["SERVICE_TOKEN_SECRET"] == "from-the-operator"


def test_a_free_port_cannot_be_taken_by_an_outgoing_connection_before_its_bind():
    # What bind(0) hands out is an ephemeral port: any client connection may
    # take it as its local end before the process it was meant for binds it,
    # and that bind then fails. free_port stays outside the ephemeral range.
    low, high = map(int, Path(EPHEMERAL_RANGE).read_text().split())
    ports = [free_port() for _ in range(200)]
    assert not [port for port in ports if low <= port <= high]
    assert len(set(ports)) == len(ports)

    # The failure it avoids: a port in use as a connection's local end.
    with (
        socket.create_server(("127.0.0.1", 0)) as server,
        socket.create_connection(server.getsockname()) as client,
        socket.socket() as late,
    ):
        late.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with pytest.raises(OSError, match="in use"):
            late.bind(("127.0.0.1", client.getsockname()[1]))
