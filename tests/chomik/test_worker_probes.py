"""Workers are probed like web processes: /health/live, /health/ready, /metrics."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid

import pytest

from chomik.infra import free_port
from chomik.jobs.scheduling import Job
from chomik.probes import ready_answer
from chomik.settings import Settings
from chomik.worker import Worker
from tests.chomik.messaging_helpers import FAST_GROUP, Ping, wait_until


def get(port: int, path: str) -> tuple[int, dict | str]:
    """GET a path of the worker's probe port: (status, JSON body or text)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            status, body = r.status, r.read().decode()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read().decode()
    return status, json.loads(body) if body.startswith("{") else body


def ignore(session, event):
    """A handler with no effect: these tests look at the worker, not at events."""


def nothing(context):
    """A job with no effect."""


@pytest.fixture
def settings(infra):
    return Settings(
        database_url=infra.urls["orders"],
        kafka_bootstrap_servers=infra.kafka,
        scheduler_replica_id=f"probe-{uuid.uuid4().hex[:8]}",
    )


@pytest.fixture
def started():
    workers = []

    def start(worker: Worker) -> Worker:
        workers.append(worker)
        worker.start()
        return worker

    yield start
    for worker in workers:
        worker.stop()
        worker.join()


def test_a_running_worker_is_live_at_once_and_ready_once_assigned(settings, started):
    topic = f"test.probes.{uuid.uuid4().hex[:8]}"
    worker = started(
        Worker(
            f"probe-{uuid.uuid4().hex[:6]}",
            settings,
            consumers={Ping.type: ignore},
            event_types={Ping.type: Ping},
            topics=[topic],
            jobs=[Job("nothing", nothing, seconds=3600)],
            consumer_options=FAST_GROUP,
            metrics_port=free_port(),
        )
    )
    port = worker.probe_port
    assert get(port, "/health/live") == (200, {"status": "ok"})
    status, body = wait_until(
        lambda: (answer := get(port, "/health/ready"))[0] == 200 and answer, 30
    )
    assert body == {
        "status": "ok",
        "checks": dict.fromkeys(("database", "broker", "consumer", "scheduler"), "ok"),
    }
    assert worker._consumer.assigned  # noqa: SLF001 - what "ready" promised
    metrics_status, text = get(port, "/metrics")
    assert metrics_status == 200
    assert "consumer_lag" in text
    # Not gzipped even when asked: a scrape every 15 s, on a private port.
    asking = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics", headers={"Accept-Encoding": "gzip"}
    )
    with urllib.request.urlopen(asking, timeout=5) as answer:
        assert answer.headers.get("Content-Encoding") is None
        assert b"consumer_lag" in answer.read()
    assert get(port, "/health/other")[0] == 404


def test_a_worker_whose_database_is_unreachable_is_live_but_not_ready(
    settings, started
):
    closed = f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/chomik_orders"
    worker = started(
        Worker(
            "probe-nodb",
            settings.replace(database_url=closed),
            kit_jobs=False,  # a scheduler cannot start without its database
            relay=False,
            metrics_port=free_port(),
        )
    )
    assert get(worker.probe_port, "/health/live") == (200, {"status": "ok"})
    status, body = get(worker.probe_port, "/health/ready")
    assert status == 503
    assert body == {"status": "unavailable", "checks": {}, "failing": "database"}


def test_a_worker_whose_broker_is_unreachable_is_not_ready(settings):
    worker = Worker(
        "probe-nobroker",
        settings.replace(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}"),
    )
    try:
        code, body = ready_answer(worker.ready_checks())
    finally:
        worker.engine.dispose()
    assert (code, body["failing"], body["checks"]) == (
        503,
        "broker",
        {"database": "ok"},
    )


def test_only_the_parts_a_worker_runs_are_checked(settings):
    bare = Worker("probe-bare", settings, relay=False, kit_jobs=False)
    full = Worker(
        "probe-full",
        settings,
        consumers={Ping.type: ignore},
        jobs=[Job("nothing", nothing, seconds=3600)],
    )
    try:
        assert list(bare.ready_checks()) == ["database"]
        assert list(full.ready_checks()) == [
            "database",
            "broker",
            "consumer",
            "scheduler",
        ]
        code, body = ready_answer(full.ready_checks())  # not started: not ready
        assert (code, body["failing"]) == (503, "consumer")
    finally:
        bare.engine.dispose()
        full.engine.dispose()


def test_stopping_the_worker_releases_the_probe_port(settings):
    port = free_port()
    worker = Worker("probe-stop", settings, relay=False, metrics_port=port)
    worker.start()
    assert get(port, "/health/live")[0] == 200
    worker.stop()
    worker.join()
    with pytest.raises(urllib.error.URLError):
        get(port, "/health/live")
