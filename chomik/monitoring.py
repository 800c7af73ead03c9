"""Prometheus for `chomik run`: the launcher's processes as targets, the alert rules.

When the `prometheus` binary exists (Debian's package), the launcher starts one with
a configuration rendered from its own process table: every web process of
`chomik.apps.APPS` on its port and every worker on the metrics port the launcher
gave it, labelled as in the compose deployment (`job` `chomik` or `chomik-workers`,
`app`), so the same rules and dashboards apply. Its data lives under the launcher's
data directory. Without the binary, or with its port taken, the system starts
without it and says so in one line.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests
import yaml

from chomik.apps import APPS
from chomik.infra import RunRecords, die_with_parent, port_is_free, stop_process

if TYPE_CHECKING:
    from chomik.launcher import Launcher

PROJECT_DIR = Path(__file__).resolve().parent.parent
RULES = PROJECT_DIR / "docker" / "prometheus" / "alerts.yml"
PROMETHEUS_PORT = 17090
SCRAPE_INTERVAL = "15s"  # each scrape renders every process's metrics: a third of the idle cost at 5 s
LABEL = "prometheus"


@dataclass(frozen=True)
class Target:
    """One process Prometheus scrapes."""

    job: str  # chomik (web) or chomik-workers, as in docker/prometheus
    app: str
    address: str  # host:port


def targets(host: str, worker_ports: Mapping[str, str]) -> list[Target]:
    """Every web process of APPS on `host`, and every worker by its metrics port.

    `worker_ports` is the launcher's table: label (`orders-worker-1`) to port; the
    workers serve their metrics on 127.0.0.1.
    """
    found = [Target("chomik", spec.name, f"{host}:{spec.port}") for spec in APPS]
    for label, port in worker_ports.items():
        app = label.split("-worker-")[0]
        found.append(Target("chomik-workers", app, f"127.0.0.1:{port}"))
    return found


def render_config(
    scraped: list[Target], *, rules: Path = RULES, interval: str = SCRAPE_INTERVAL
) -> dict[str, Any]:
    """The Prometheus configuration: the rules and one static target per process."""
    jobs: dict[str, list[dict[str, Any]]] = {}
    for target in scraped:
        jobs.setdefault(target.job, []).append(
            {"targets": [target.address], "labels": {"app": target.app}}
        )
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {"job_name": job, "metrics_path": "/metrics", "static_configs": groups}
            for job, groups in jobs.items()
        ],
    }


@dataclass
class Prometheus:
    """A running Prometheus of the launcher."""

    process: subprocess.Popen[bytes]
    url: str

    def ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return True
            time.sleep(0.2)
        return False


@contextlib.contextmanager
def monitoring(
    environ: Mapping[str, str],
    *,
    base_dir: Path,
    host: str,
    worker_ports: Mapping[str, str],
    say: Any = print,
) -> Iterator[Prometheus | None]:
    """Run Prometheus over the launcher's processes while the block runs, if we can."""
    binary = environ.get("PROMETHEUS_BIN") or shutil.which("prometheus")
    port = int(environ.get("PROMETHEUS_PORT", PROMETHEUS_PORT))
    if not binary:
        say(
            "prometheus not found: monitoring is off (Debian: apt-get install prometheus)"
        )
        yield None
        return
    if not port_is_free(port, host):
        say(
            f"prometheus: port {port} is in use (set PROMETHEUS_PORT): monitoring is off"
        )
        yield None
        return
    directory = base_dir / "prometheus-server"
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "prometheus.yml"
    interval = environ.get("PROMETHEUS_SCRAPE_INTERVAL", SCRAPE_INTERVAL)
    rendered = render_config(targets(host, worker_ports), interval=interval)
    config.write_text(yaml.safe_dump(rendered, sort_keys=False))
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={directory / 'data'}",
        f"--web.listen-address={host}:{port}",
        "--storage.tsdb.retention.time=2d",
    ]
    records = RunRecords(base_dir / "run")
    with (base_dir / "logs" / "prometheus.log").open("ab") as log:
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=die_with_parent(),
        )  # fmt: skip
    records.process(LABEL, process.pid)
    server = Prometheus(process, f"http://{host}:{port}")
    try:
        if server.ready(timeout=30):
            say(f"prometheus {server.url} (rules {RULES.name}, config {config})")
            yield server
        else:
            say(
                f"prometheus did not start (log: {base_dir / 'logs' / 'prometheus.log'})"
            )
            yield None
    finally:
        stop_process(process)
        records.forget(LABEL)


def watching(
    launcher: Launcher, *, say: Any = print
) -> contextlib.AbstractContextManager[Prometheus | None]:
    """`monitoring` over the processes of a launcher that has started them."""
    return monitoring(
        launcher.environ,
        base_dir=launcher.base_dir,
        host=launcher.host,
        worker_ports=launcher.metrics,
        say=say,
    )
