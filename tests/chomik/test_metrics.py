"""`chomik.metrics`: kit metrics declared once, added up across gunicorn's processes."""

from __future__ import annotations

import os
import re
import runpy
import subprocess
import sys
from types import SimpleNamespace

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.multiprocess import MultiProcessCollector

from chomik import metrics
from chomik.cli import GUNICORN_CONF

CHILD = """
from chomik import metrics
metrics.OUTBOX_PUBLISHED.inc(3)
metrics.LAG.labels("g", "t", "0").set({lag})
metrics.JOB_DURATION.labels("j").observe(0.2)
"""


def declared():
    return {
        name: value
        for name, value in vars(metrics).items()
        if isinstance(value, Counter | Gauge | Histogram)
    }


def test_kit_metrics_follow_the_prometheus_naming_conventions():
    assert len(declared()) >= 15
    for name, metric in declared().items():
        family = metric._name
        assert re.fullmatch(r"[a-z][a-z0-9_]*", family), name
        assert not family.endswith("_total"), f"{name}: the client adds _total"
        if isinstance(metric, Histogram):
            assert family.endswith("_seconds"), f"{name}: durations in seconds"
        assert set(metric._labelnames) <= {
            "group", "topic", "partition", "job", "outcome", "operation",
        }, name  # fmt: skip


def test_values_of_several_processes_add_up_in_multiprocess_mode(tmp_path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for lag in (4, 9):
        subprocess.run(
            [sys.executable, "-c", CHILD.format(lag=lag)], env=env, check=True
        )
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))
    labels = {"group": "g", "topic": "t", "partition": "0"}
    assert registry.get_sample_value("outbox_published_total") == 6
    # Lag is a level, not a sum: the worst process's value, not 13.
    assert registry.get_sample_value("consumer_lag", labels) == 9
    assert (
        registry.get_sample_value("scheduler_job_duration_seconds_count", {"job": "j"})
        == 2
    )


def test_gunicorn_drops_a_dead_workers_live_gauges_and_needs_no_metrics_dir(
    tmp_path, monkeypatch
):
    hooks = runpy.run_path(str(GUNICORN_CONF))
    worker = SimpleNamespace(pid=4242)
    live = tmp_path / "gauge_livesum_4242.db"
    other = tmp_path / "gauge_livesum_4243.db"
    live.touch()
    other.touch()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    hooks["child_exit"](None, worker)
    assert not live.exists()
    assert other.exists()
    # gunicorn run with the project's settings but no multiprocess metrics
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    hooks["child_exit"](None, worker)
