"""Reading the deployment artifacts: compose, OpenShift, Prometheus, Grafana.

There is no container engine where the tests run, so these files are checked by
parsing them and comparing them with what the code declares (`chomik.apps.APPS`,
`chomik.migrating.DATABASES`, the settings classes) and with what `chomik run` starts.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from chomik import launcher, migrating
from chomik.apps import APPS
from chomik.settings import Settings, describe

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
TEMPLATE = ROOT / "openshift-templates" / "chomik.yaml"
PROMETHEUS = ROOT / "docker" / "prometheus" / "prometheus.yml"
ALERTS = ROOT / "docker" / "prometheus" / "alerts.yml"
GRAFANA = ROOT / "docker" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))

# The modules that declare business metrics (through `chomik.metrics`): each one's
# metrics must follow Prometheus' conventions and appear on a dashboard.
BUSINESS_METRIC_MODULES = (
    "apps.gateway.metrics",
    "apps.storage.metrics",
    "apps.orders.metrics",
    "apps.payment.metrics",
    "apps.delivery.metrics",
    "clients.orders.moves",
)

# Processes reachable from outside the deployment: the gateway and the two mocks
# standing in for outside systems (DESIGN "Security").
PUBLIC = frozenset({"gateway", "bank", "carrier"})

# Variables read outside the settings classes: gunicorn's conf file, the launcher and
# `chomik db` (one URL variable per database).
LAUNCHER_VARIABLES = frozenset(
    {
        "PROMETHEUS_MULTIPROC_DIR",
        "WEB_CONCURRENCY",
        "WEB_THREADS",
        "WEB_TIMEOUT",
        "CHOMIK_DATA_DIR",
        "JWT_PRIVATE_KEY_FILE",
    }
)
DATABASE_VARIABLES = frozenset(
    launcher.database_url_var(n) for n in migrating.DATABASES
)


def load_yaml(path: Path) -> Any:
    """Parse one YAML file (anchors and merge keys resolved)."""
    with path.open() as handle:
        return yaml.safe_load(handle)


def compose() -> dict[str, Any]:
    """docker-compose.yml, parsed."""
    document: dict[str, Any] = load_yaml(COMPOSE)
    return document


def command_of(service: dict[str, Any]) -> list[str]:
    """A compose service's command as an argument list."""
    command = service.get("command", [])
    return command.split() if isinstance(command, str) else list(command)


def chomik_services(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every compose service that runs a `chomik` command."""
    return {
        name: service
        for name, service in document["services"].items()
        if command_of(service)[:1] == ["chomik"]
    }


def services_running(
    document: dict[str, Any], *command: str
) -> dict[str, dict[str, Any]]:
    """The compose services whose command is exactly `command`."""
    return {
        name: service
        for name, service in chomik_services(document).items()
        if command_of(service) == list(command)
    }


def web_command(app: str) -> list[str]:
    """The command of a web process in a container."""
    return ["chomik", "web", app, "--host", "0.0.0.0"]


def template() -> dict[str, Any]:
    """openshift-templates/chomik.yaml, parsed."""
    document: dict[str, Any] = load_yaml(TEMPLATE)
    return document


def objects(document: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    """The template's objects of one kind, by name."""
    return {o["metadata"]["name"]: o for o in document["objects"] if o["kind"] == kind}


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    """The pod spec of a Deployment or Job."""
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def containers(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every container of every Deployment and Job of the template."""
    for kind in ("Deployment", "Job"):
        for workload in objects(document, kind).values():
            yield from pod_spec(workload)["containers"]


def container_variables(
    document: dict[str, Any], container: dict[str, Any]
) -> set[str]:
    """Names of the variables a container gets: its `env` and its ConfigMaps."""
    names = {entry["name"] for entry in container.get("env", [])}
    config_maps = objects(document, "ConfigMap")
    for source in container.get("envFrom", []):
        names |= set(config_maps[source["configMapRef"]["name"]]["data"])
    return names


def _subclasses(klass: type[Settings]) -> Iterable[type[Settings]]:
    for sub in klass.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def variables_read_by_code() -> set[str]:
    """Every variable some settings class, the launcher or gunicorn's conf reads."""
    for spec in APPS:
        importlib.import_module(spec.web.partition(":")[0] + ".settings")
    classes = [Settings] + [
        klass
        for klass in _subclasses(Settings)
        if klass.__module__.split(".")[0] in {"chomik", "apps", "mocks"}
        and dataclasses.is_dataclass(klass)
    ]
    rows = describe(classes)
    return {row[0] for row in rows} | LAUNCHER_VARIABLES | DATABASE_VARIABLES


# --- PromQL -------------------------------------------------------------------------

_PROMQL_WORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
    | {"and", "or", "unless", "offset", "inf", "nan"}
)
# Series Prometheus makes itself for every target.
PROMETHEUS_SERIES = frozenset({"up", "scrape_duration_seconds"})


def metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions or labels)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expression)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text
    )
    names = set()
    for match in re.finditer(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or match.group() in _PROMQL_WORDS:
            continue
        names.add(match.group())
    return names


def sample_names(family: str, kind: str) -> set[str]:
    """The series names a metric family of a given type exposes."""
    if kind == "counter":
        return {f"{family}_total", f"{family}_created"}
    if kind == "histogram":
        return {f"{family}_bucket", f"{family}_count", f"{family}_sum"}
    if kind == "summary":
        return {family, f"{family}_count", f"{family}_sum"}
    return {family}


def alert_expressions() -> dict[str, str]:
    """Every alert rule's expression, by alert name."""
    rules = load_yaml(ALERTS)
    return {
        rule["alert"]: rule["expr"]
        for group in rules["groups"]
        for rule in group["rules"]
    }


def dashboard_expressions(dashboard: dict[str, Any]) -> dict[str, str]:
    """Every panel query of a Grafana dashboard, by `panel title/refId`."""
    found = {}
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            found[f"{panel['title']}/{target['refId']}"] = target["expr"]
    return found
