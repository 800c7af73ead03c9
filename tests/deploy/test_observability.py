"""Prometheus scrape config, alert rules and the Grafana dashboards, against the code.

Every metric an alert or a panel queries must be one the processes expose: the
HTTP metrics are read from a real app's `/metrics`, the business metrics from the
collectors the kit and txcoord register.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.parser import text_string_to_metric_families

from apps.orders import create_app
from apps.orders.settings import OrdersSettings
from chomik.apps import APPS
from tests.deploy.manifests import (
    ALERTS,
    BUSINESS_METRIC_MODULES,
    DASHBOARDS,
    GRAFANA,
    PROMETHEUS,
    PROMETHEUS_SERIES,
    ROOT,
    alert_expressions,
    compose,
    dashboard_expressions,
    load_yaml,
    metric_names,
    sample_names,
)
from txcoord import PrometheusObserver

# The kit module that declares every kit metric (outbox, consumers, jobs, ...).
METRIC_MODULES = ("chomik.metrics", *BUSINESS_METRIC_MODULES)
HTTP_SERIES = ("flask_http_request_duration_seconds_bucket", "flask_http_request_total")


@pytest.fixture
def exposition(settings_for) -> str:
    """The text of `/metrics` of a real orders app after one request."""
    client = create_app(settings_for(OrdersSettings)).test_client()
    assert client.get("/health/live").status_code == 200
    response = client.get("/metrics")
    assert response.status_code == 200
    return response.get_data(as_text=True)


@pytest.fixture
def exposed(exposition) -> set[str]:
    """Every series name the processes can expose."""
    names = set(PROMETHEUS_SERIES)
    for family in text_string_to_metric_families(exposition):
        names |= sample_names(family.name, family.type)
    for module in METRIC_MODULES:
        importlib.import_module(module)
    txcoord_registry = CollectorRegistry()
    PrometheusObserver(registry=txcoord_registry)
    for registry in (REGISTRY, txcoord_registry):
        for metric in registry.collect():
            names |= sample_names(metric.name, metric.type)
    return names


def load_dashboard(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    return document


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return load_dashboard(GRAFANA / "dashboards" / "chomik.json")


def business_metrics() -> dict[str, Counter | Gauge | Histogram]:
    """Every business metric, by the series name its panels query."""
    found: dict[str, Counter | Gauge | Histogram] = {}
    for module in BUSINESS_METRIC_MODULES:
        for value in vars(importlib.import_module(module)).values():
            if isinstance(value, Counter | Gauge | Histogram):
                found[value._name] = value
    return found


def test_business_metrics_follow_the_prometheus_naming_conventions():
    metrics = business_metrics()
    assert len(metrics) >= 20
    for name, metric in metrics.items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name
        assert not name.endswith("_total"), f"{name}: the client adds _total"
        if isinstance(metric, Histogram):
            assert name.endswith("_seconds"), f"{name}: durations in seconds"
        assert "job" not in metric._labelnames, f"{name}: `job` is the target's"
        assert "instance" not in metric._labelnames, name


def test_every_business_metric_appears_on_a_dashboard():
    queried = {
        name
        for path in DASHBOARDS
        for expression in dashboard_expressions(load_dashboard(path)).values()
        for name in metric_names(expression)
    }
    for name, metric in business_metrics().items():
        series = sample_names(name, metric._type)
        assert series & queried, f"{name} is on no dashboard"


def test_a_real_app_exposes_the_http_metrics(exposition):
    families = {
        name
        for family in text_string_to_metric_families(exposition)
        for name in sample_names(family.name, family.type)
    }
    assert set(HTTP_SERIES) <= families


def test_prometheus_scrapes_every_web_process():
    config = load_yaml(PROMETHEUS)
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "chomik"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = {
        target: group["labels"]["app"]
        for group in job["static_configs"]
        for target in group["targets"]
    }
    # The gateway's /metrics is on its metrics port, never the published one.
    gateway_metrics = compose()["services"]["gateway"]["environment"]["METRICS_PORT"]
    expected = {
        f"{spec.name}:{gateway_metrics if spec.name == 'gateway' else spec.port}": (
            spec.name
        )
        for spec in APPS
    }
    assert targets == expected
    published = compose()["services"]["gateway"]["ports"]
    assert not [p for p in published if str(gateway_metrics) in str(p)]


def test_prometheus_loads_the_alert_rules_compose_mounts():
    config = load_yaml(PROMETHEUS)
    mounts = dict(
        str(volume).split(":")[:2]
        for volume in compose()["services"]["prometheus"]["volumes"]
        if str(volume).startswith("./")
    )
    assert mounts[f"./{ALERTS.relative_to(ROOT)}"] in config["rule_files"]
    assert mounts[f"./{PROMETHEUS.relative_to(ROOT)}"] == (
        "/etc/prometheus/prometheus.yml"
    )


def test_metric_names_are_parsed_from_promql():
    expression = (
        'sum by (app, le) (rate(flask_http_request_duration_seconds_bucket{job="x",'
        ' status=~"5.."}[5m])) / on (app) group_left up > 0.5'
    )
    assert metric_names(expression) == {
        "flask_http_request_duration_seconds_bucket",
        "up",
    }


def test_every_alert_queries_metrics_that_exist(exposed):
    expressions = alert_expressions()
    assert expressions
    for alert, expression in expressions.items():
        names = metric_names(expression)
        assert names, alert
        assert names <= exposed, f"{alert}: {sorted(names - exposed)}"


def test_every_alert_says_what_is_wrong():
    rules = load_yaml(ALERTS)
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"warning", "critical"}
            assert rule["annotations"]["summary"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_dashboard_query_uses_metrics_that_exist(exposed, path):
    expressions = dashboard_expressions(load_dashboard(path))
    assert expressions
    for panel, expression in expressions.items():
        names = metric_names(expression)
        assert names, panel
        assert names <= exposed, f"{panel}: {sorted(names - exposed)}"


def test_the_dashboards_are_the_technical_one_and_the_business_ones():
    names = {path.stem for path in DASHBOARDS}
    assert names == {"chomik", "funnel", "payments", "stock", "accounts"}
    uids = [load_dashboard(path)["uid"] for path in DASHBOARDS]
    assert len(set(uids)) == len(uids)


def test_dashboard_covers_http_and_business_metrics(dashboard):
    queried = set().union(
        *(metric_names(e) for e in dashboard_expressions(dashboard).values())
    )
    assert set(HTTP_SERIES) <= queried
    for prefix in ("outbox_", "consumer_", "txcoord_"):
        assert any(name.startswith(prefix) for name in queried), prefix


def test_grafana_is_provisioned_from_the_repository(dashboard):
    grafana = compose()["services"]["grafana"]
    mounts = dict(
        str(volume).split(":")[:2]
        for volume in grafana["volumes"]
        if str(volume).startswith("./")
    )
    provisioning = GRAFANA / "provisioning"
    assert mounts[f"./{provisioning.relative_to(ROOT)}"] == "/etc/grafana/provisioning"
    (source,) = load_yaml(provisioning / "datasources" / "prometheus.yml")[
        "datasources"
    ]
    assert source["url"] == "http://prometheus:9090"
    (provider,) = load_yaml(provisioning / "dashboards" / "chomik.yml")["providers"]
    dashboards = GRAFANA / "dashboards"
    assert mounts[f"./{dashboards.relative_to(ROOT)}"] == provider["options"]["path"]
    for path in DASHBOARDS:
        panels = load_dashboard(path)["panels"]
        assert len({p["id"] for p in panels}) == len(panels), path.name
        for panel in panels:
            for target in panel.get("targets", []):
                assert target["datasource"]["uid"] == source["uid"], path.name
