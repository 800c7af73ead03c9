"""The launcher starts a dead child again, and gives up on one that keeps dying; a
dead embedded broker is started again, and every worker after it."""

from __future__ import annotations

import datetime as dt
import os
import signal
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from chomik.infra import InfraError, KafkaBroker, free_port, wait_for_port
from chomik.launcher import Launcher, Restarts

SLEEPER = [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"]
CRASHER = [sys.executable, "-c", "import sys; print('bad config'); sys.exit(3)"]


def supervised_until(launcher, done, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "the supervisor did not get there"
        launcher.supervise()
        time.sleep(0.05)


@pytest.fixture
def launcher(tmp_path):
    started = Launcher(
        environ={}, base_dir=tmp_path, restarts=Restarts(backoff=0.1, max_backoff=0.2)
    )
    yield started
    started.stop()


def test_a_killed_child_is_started_again_under_the_same_label(launcher, capsys):
    launcher.spawn("orders-worker-1", SLEEPER, dict(os.environ))
    ((_, first),) = launcher.children
    os.kill(first.pid, signal.SIGKILL)

    supervised_until(launcher, lambda: launcher.children[0][1] is not first)

    ((label, second),) = launcher.children
    assert label == "orders-worker-1"
    assert second.poll() is None
    assert launcher.restarts.count == {"orders-worker-1": 1}
    line = capsys.readouterr().out
    assert f"orders-worker-1 exited with code {-signal.SIGKILL}; restart 1" in line
    recorded = (launcher.base_dir / "run").glob("*orders-worker-1*")
    assert any(str(second.pid) in path.read_text() for path in recorded)


def test_what_a_dead_child_left_in_its_group_is_killed_before_the_restart(launcher):
    # A gunicorn master's workers stay in its group and hold its port.
    orphan_maker = [
        sys.executable, "-c",
        "import os, subprocess, sys, time\n"
        "w = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(w.pid, flush=True); time.sleep(60)",
    ]  # fmt: skip
    launcher.spawn("gateway", orphan_maker, dict(os.environ))
    ((_, master),) = launcher.children
    log = launcher.log_dir / "gateway.log"
    supervised_until(launcher, lambda: log.exists() and log.read_text().strip())
    worker = int(log.read_text().split()[0])
    os.kill(master.pid, signal.SIGKILL)
    supervised_until(launcher, lambda: launcher.children[0][1] is not master)

    supervised_until(launcher, lambda: not alive(worker))


def alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_child_that_keeps_dying_ends_the_run_with_one_clear_line(launcher):
    launcher.restarts = Restarts(limit=3, window=30, backoff=0.05, max_backoff=0.05)
    launcher.spawn("payment-worker-2", CRASHER, dict(os.environ))

    with pytest.raises(InfraError) as failed:
        supervised_until(launcher, lambda: False)

    assert str(failed.value) == (
        "payment-worker-2 exited 3 times in 30s (last code 3), "
        "not restarting it: bad config"
    )
    assert launcher.restarts.count == {"payment-worker-2": 2}


def test_the_backoff_doubles_with_each_death_inside_the_window_and_is_capped():
    restarts = Restarts(limit=10, window=60, backoff=0.5, max_backoff=3)
    delays = [restarts.died("x", now) for now in (0, 1, 2, 3, 4)]
    assert delays == [0.5, 1, 2, 3, 3]
    # Deaths older than the window are forgotten: a child that lived long starts fresh.
    assert restarts.died("x", 500) == 0.5


def test_a_dead_embedded_broker_is_started_again_with_every_worker_and_its_events(
    launcher, tmp_path, capsys, committed_db
):
    from sqlalchemy.orm import Session

    from chomik.messaging.outbox import emit
    from tests.chomik.messaging_helpers import Ping

    broker = KafkaBroker(port=free_port(), log_path=tmp_path / "tansu.log")
    launcher._start_broker(broker)
    orders = committed_db.engine("orders")
    launcher.urls = {"orders": orders.url.render_as_string(hide_password=False)}
    with Session(orders) as session, session.begin():  # sent to the broker that dies
        emit(session, Ping("k", 1), topic="test.lost")
    with orders.begin() as conn:
        conn.execute(sa.text("UPDATE outbox_events SET sent_at = now()"))
    try:
        launcher.spawn("orders", SLEEPER, dict(os.environ))
        launcher.spawn("orders-worker-1", SLEEPER, dict(os.environ))
        (_, web), (_, worker) = launcher.children
        dead = broker.process
        start = broker.start
        workers_at_start = []
        broker.start = lambda: (workers_at_start.append(worker.poll()), start())
        os.killpg(dead.pid, signal.SIGKILL)
        dead.wait()

        launcher.supervise()

        assert broker.process is not dead
        assert broker.process.poll() is None
        assert wait_for_port(broker.port, timeout=5)
        # The old worker had stopped before the new broker started (a consumer of
        # the new broker dying without leaving would hold its group up).
        assert workers_at_start == [-signal.SIGTERM]
        (_, web_now), (_, worker_now) = launcher.children
        assert web_now is web  # the web processes do not use the broker
        assert worker_now is not worker
        assert worker_now.poll() is None
        with orders.connect() as conn:  # to be sent again, to the new broker
            assert (
                conn.scalar(
                    sa.text("SELECT count(*) FROM outbox_events WHERE sent_at IS NULL")
                )
                == 1
            )
        out = capsys.readouterr().out
        assert "kafka exited with code" in out
        assert "orders: 1 event(s) to send again" in out
        recorded = (launcher.base_dir / "run").glob("*tansu*")
        assert any(str(broker.process.pid) in p.read_text() for p in recorded)
    finally:
        broker.stop()


def test_a_new_run_sends_again_what_the_last_runs_broker_held(
    tmp_path, capsys, committed_db
):
    from sqlalchemy.orm import Session

    from chomik.launcher import BROKER_STARTED
    from chomik.messaging.outbox import emit
    from tests.chomik.messaging_helpers import Ping

    orders = committed_db.engine("orders")
    with Session(orders) as session, session.begin():  # two events, sent long apart
        emit(session, Ping("k", 1), topic="test.lost")
        emit(session, Ping("k", 2), topic="test.lost")
    with orders.begin() as conn:
        conn.execute(sa.text("UPDATE outbox_events SET sent_at = now()"))
        conn.execute(
            sa.text(
                "UPDATE outbox_events SET sent_at = now() - interval '2 hours'"
                " WHERE seq = (SELECT min(seq) FROM outbox_events)"
            )
        )
    last_run = Launcher(environ={}, base_dir=tmp_path)
    last_run.records.directory.mkdir(parents=True)
    started = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    (last_run.records.directory / BROKER_STARTED).write_text(started.isoformat())
    launcher = Launcher(environ={}, base_dir=tmp_path)
    launcher.lost_since = launcher._previous_broker_start()
    urls = {"orders": orders.url.render_as_string(hide_password=False)}

    launcher.resend_lost(urls)

    with orders.connect() as conn:  # the one sent to the last run's broker
        assert (
            conn.scalar(
                sa.text("SELECT count(*) FROM outbox_events WHERE sent_at IS NULL")
            )
            == 1
        )
    assert "orders: 1 event(s) to send again" in capsys.readouterr().out
    Launcher(environ={}, base_dir=tmp_path / "first").resend_lost(urls)  # a first run
    assert capsys.readouterr().out == ""
