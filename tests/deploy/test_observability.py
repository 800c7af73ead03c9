"""Prometheus scrape config, alert rules and the Grafana dashboard, against the code.

Every metric an alert or a panel queries must be one the processes expose: the
HTTP metrics are read from a real app's `/metrics`, the business metrics from the
collectors the kit and txcoord register.
"""

from __future__ import annotations

import importlib
import json
from typing import Any

import pytest
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from apps.orders import create_app
from apps.orders.settings import OrdersSettings
from chomik.apps import APPS
from tests.deploy.manifests import (
    ALERTS,
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
METRIC_MODULES = ("chomik.metrics",)
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


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(
        (GRAFANA / "dashboards" / "chomik.json").read_text()
    )
    return document


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


def test_every_dashboard_query_uses_metrics_that_exist(exposed, dashboard):
    expressions = dashboard_expressions(dashboard)
    assert expressions
    for panel, expression in expressions.items():
        names = metric_names(expression)
        assert names, panel
        assert names <= exposed, f"{panel}: {sorted(names - exposed)}"


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
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == source["uid"]
