"""`chomik run`'s Prometheus: its configuration comes from the launcher's table."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
import requests
import yaml

from chomik import monitoring
from chomik.apps import APPS
from chomik.infra import free_port

PROMETHEUS = shutil.which("prometheus")
WORKERS = {"orders-worker-1": "19101", "orders-worker-2": "19102", "bank-worker-1": "9"}


def active_targets(url):
    return requests.get(f"{url}/api/v1/targets", timeout=5).json()["data"][
        "activeTargets"
    ]


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_every_web_process_and_every_worker_is_a_target():
    config = monitoring.render_config(monitoring.targets("127.0.0.3", WORKERS))
    scraped = {
        (job["job_name"], group["labels"]["app"], target)
        for job in config["scrape_configs"]
        for group in job["static_configs"]
        for target in group["targets"]
    }
    assert scraped == {
        *{("chomik", spec.name, f"127.0.0.3:{spec.port}") for spec in APPS},
        ("chomik-workers", "orders", "127.0.0.1:19101"),
        ("chomik-workers", "orders", "127.0.0.1:19102"),
        ("chomik-workers", "bank", "127.0.0.1:9"),
    }
    assert config["rule_files"] == [str(monitoring.RULES)]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_the_rendered_config_and_its_rules_are_valid(tmp_path):
    config = monitoring.render_config(monitoring.targets("127.0.0.1", WORKERS))
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run(
        ["promtool", "check", "config", str(path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_without_the_binary_it_says_so_and_the_system_goes_on(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    said = []
    with monitoring.monitoring(
        {}, base_dir=tmp_path, host="127.0.0.1", worker_ports={}, say=said.append
    ) as server:
        assert server is None
    assert len(said) == 1
    assert said[0].startswith("prometheus not found")


@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not installed")
def test_it_runs_with_the_rules_scrapes_the_table_and_stops(tmp_path):
    (tmp_path / "logs").mkdir()
    port = free_port()
    said = []
    environ = {"PROMETHEUS_PORT": str(port)}
    with monitoring.monitoring(
        environ, base_dir=tmp_path, host="127.0.0.1", worker_ports=WORKERS,
        say=said.append,
    ) as server:  # fmt: skip
        assert server is not None
        assert server.url == f"http://127.0.0.1:{port}"
        assert said == [
            f"prometheus {server.url} (rules alerts.yml, config "
            f"{tmp_path / 'prometheus-server' / 'prometheus.yml'})"
        ]
        assert wait_for(lambda: len(active_targets(server.url)) == len(APPS) + 3)
        rules = requests.get(f"{server.url}/api/v1/rules", timeout=5).json()
        names = {r["name"] for g in rules["data"]["groups"] for r in g["rules"]}
        assert "ChomikProcessDown" in names
        process = server.process
        assert (tmp_path / "run" / "prometheus.pid").exists()
    assert process.poll() is not None
    assert not (tmp_path / "run" / "prometheus.pid").exists()
    # Its port taken: one line, and nothing started.
    said.clear()
    with (
        monitoring.monitoring(
            {"PROMETHEUS_PORT": str(port)}, base_dir=tmp_path, host="127.0.0.1",
            worker_ports={}, say=said.append,
        ) as first,
        monitoring.monitoring(
            {"PROMETHEUS_PORT": str(port)}, base_dir=tmp_path / "second",
            host="127.0.0.1", worker_ports={}, say=said.append,
        ) as second,
    ):  # fmt: skip
        assert first is not None
        assert second is None
    assert said[1] == (
        f"prometheus: port {port} is in use (set PROMETHEUS_PORT): monitoring is off"
    )
