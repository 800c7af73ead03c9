"""The OpenShift template against the code and against docker-compose.yml."""

from __future__ import annotations

import re
from typing import Any

import pytest

from chomik import migrating
from chomik.apps import APPS, AppSpec
from tests.deploy.manifests import (
    PUBLIC,
    TEMPLATE,
    chomik_services,
    command_of,
    compose,
    container_variables,
    containers,
    objects,
    pod_spec,
    template,
    variables_read_by_code,
    web_command,
)


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return template()


def only_container(workload: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod_spec(workload)["containers"]
    return container


def test_template_parses_and_declares_every_parameter_it_uses(document):
    assert document["kind"] == "Template"
    assert document["apiVersion"] == "template.openshift.io/v1"
    declared = {p["name"] for p in document["parameters"]}
    used = set(re.findall(r"\$\{\{?([A-Z0-9_]+)\}?\}", TEMPLATE.read_text()))
    assert used == declared
    for parameter in document["parameters"]:
        has_source = "value" in parameter or "generate" in parameter
        assert has_source != parameter.get("required", False), parameter["name"]


def test_every_workload_runs_the_image_parameter(document):
    images = {c["image"] for c in containers(document)}
    assert images == {"${IMAGE}"}


@pytest.mark.parametrize("spec", APPS, ids=lambda s: s.name)
def test_every_app_has_a_web_deployment_and_service(document, spec: AppSpec):
    deployment = objects(document, "Deployment")[spec.name]
    container = only_container(deployment)
    assert container["command"] == web_command(spec.name)
    # The gateway adds its metrics port (not exposed: see below).
    ports = [p for p in container["ports"] if p["name"] != "metrics"]
    assert ports == [{"name": "http", "containerPort": spec.port}]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert deployment["spec"]["replicas"] == "${{WEB_REPLICAS}}"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    service = objects(document, "Service")[spec.name]
    assert service["spec"]["selector"] == selector
    assert [p["port"] for p in service["spec"]["ports"]] == [spec.port]


def test_workers_are_the_same_as_in_compose(document):
    deployments = objects(document, "Deployment").values()
    workers = {
        tuple(only_container(d)["command"]): d
        for d in deployments
        if only_container(d)["command"][1] == "worker"
    }
    in_compose = {
        tuple(command_of(s))
        for s in chomik_services(compose()).values()
        if command_of(s)[1] == "worker"
    }
    assert set(workers) == in_compose
    for spec in APPS:
        if spec.worker is not None:
            assert ("chomik", "worker", spec.name) in workers
    payment = workers[("chomik", "worker", "payment")]
    replicas = payment["spec"]["replicas"]
    assert replicas == "${{PAYMENT_WORKER_REPLICAS}}"
    defaults = {p["name"]: p.get("value") for p in document["parameters"]}
    assert defaults["PAYMENT_WORKER_REPLICAS"] == "2"
    for spec in APPS:  # as many replicas by default as `chomik run` starts
        if spec.worker is not None:
            replicas = workers[("chomik", "worker", spec.name)]["spec"]["replicas"]
            if isinstance(replicas, str):  # a template parameter: its default
                replicas = defaults[replicas.strip("${}")]
            assert str(replicas) == str(spec.worker_replicas), spec.name
    for deployment in workers.values():  # each replica's id: its own pod name
        env = {e["name"]: e for e in only_container(deployment)["env"]}
        field = env["SCHEDULER_REPLICA_ID"]["valueFrom"]["fieldRef"]
        assert field["fieldPath"] == "metadata.name"
        assert "ports" not in only_container(deployment)


def test_every_compose_command_is_deployed(document):
    deployed = {tuple(c["command"]) for c in containers(document)}
    in_compose = {tuple(command_of(s)) for s in chomik_services(compose()).values()}
    assert deployed == in_compose


def test_routes_only_for_the_gateway_and_the_mocks(document):
    routes = objects(document, "Route")
    assert set(routes) == PUBLIC
    for name, route in routes.items():
        assert route["spec"]["to"] == {"kind": "Service", "name": name}
        assert route["spec"]["tls"]["termination"] == "edge"


def test_migrate_job_upgrades_every_database(document):
    (job,) = objects(document, "Job").values()
    container = only_container(job)
    assert container["command"] == ["chomik", "db", "upgrade", "all"]
    assert pod_spec(job)["restartPolicy"] == "Never"
    assert "${MIGRATION_ID}" in job["metadata"]["name"]  # a new Job every rollout
    keys = {e["name"]: e["valueFrom"]["secretKeyRef"]["key"] for e in container["env"]}
    expected = {f"{n.upper()}_DATABASE_URL" for n in migrating.DATABASES}
    assert keys == {k: k for k in expected}
    urls = objects(document, "Secret")["chomik-databases"]["stringData"]
    for name in migrating.DATABASES:
        assert urls[f"{name.upper()}_DATABASE_URL"].endswith(f"/chomik_{name}")


def test_secrets_come_from_parameters_and_reach_the_processes(document):
    secrets = objects(document, "Secret")
    token = secrets["chomik-service-token"]["stringData"]
    assert token == {"SERVICE_TOKEN_SECRET": "${SERVICE_TOKEN_SECRET}"}
    keys = secrets["chomik-jwt-keys"]["data"]
    assert set(keys.values()) == {"${JWT_PRIVATE_KEY_B64}", "${JWT_PUBLIC_KEY_B64}"}
    for deployment in objects(document, "Deployment").values():
        env = {e["name"]: e for e in only_container(deployment)["env"]}
        reference = env["SERVICE_TOKEN_SECRET"]["valueFrom"]["secretKeyRef"]
        assert reference["name"] == "chomik-service-token"
        assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == (
            "chomik-databases"
        )


def test_only_the_gateway_mounts_the_signing_key(document):
    for name, deployment in objects(document, "Deployment").items():
        volumes = pod_spec(deployment).get("volumes", [])
        secrets = {v["secret"]["secretName"] for v in volumes if "secret" in v}
        assert ("chomik-jwt-keys" in secrets) == (name == "gateway"), name
    gateway = only_container(objects(document, "Deployment")["gateway"])
    env = {e["name"]: e.get("value") for e in gateway["env"]}
    (mount,) = gateway["volumeMounts"]
    assert env["JWT_PRIVATE_KEY_FILE"] == f"{mount['mountPath']}/jwt-private.pem"


def test_the_config_matches_compose(document):
    config = objects(document, "ConfigMap")["chomik-config"]["data"]
    compose_env = compose()["services"]["orders"]["environment"]
    for variable, value in config.items():
        if variable.endswith("_URL"):
            assert compose_env[variable] == value, variable


def test_every_variable_set_is_read_by_the_code(document):
    known = variables_read_by_code()
    for container in containers(document):
        unknown = container_variables(document, container) - known
        assert not unknown, f"{container['name']}: {sorted(unknown)}"


def test_the_gateway_gets_the_callback_secrets_from_parameters(document):
    names = ("BANK_CALLBACK_SECRETS", "CARRIER_CALLBACK_SECRETS")
    secret = objects(document, "Secret")["chomik-callback-secrets"]["stringData"]
    assert secret == {name: f"${{{name}}}" for name in names}
    required = {p["name"] for p in document["parameters"] if p.get("required")}
    assert set(names) <= required
    gateway = only_container(objects(document, "Deployment")["gateway"])
    env = {e["name"]: e for e in gateway["env"]}
    for name in names:
        reference = env[name]["valueFrom"]["secretKeyRef"]
        assert reference == {"name": "chomik-callback-secrets", "key": name}


def test_every_worker_is_probed_on_its_metrics_port(document):
    workers = [
        only_container(d)
        for d in objects(document, "Deployment").values()
        if only_container(d)["command"][1] == "worker"
    ]
    assert len(workers) == sum(1 for spec in APPS if spec.worker)
    for container in workers:
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["METRICS_HOST"] == "0.0.0.0"
        port = int(env["METRICS_PORT"])
        probes = {
            kind: container[kind]["httpGet"]
            for kind in ("readinessProbe", "livenessProbe")
        }
        assert probes == {
            "readinessProbe": {"path": "/health/ready", "port": port},
            "livenessProbe": {"path": "/health/live", "port": port},
        }, container["command"]


def test_the_gateway_is_scraped_on_its_metrics_port_not_its_route(document):
    deployment = objects(document, "Deployment")["gateway"]
    container = only_container(deployment)
    env = {e["name"]: e.get("value") for e in container["env"]}
    port = int(env["METRICS_PORT"])
    assert env["METRICS_HOST"] == "0.0.0.0"
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == port
    assert {"name": "metrics", "containerPort": port} in container["ports"]
    service = objects(document, "Service")["gateway"]
    assert port not in {
        p.get("targetPort", p["port"]) for p in service["spec"]["ports"]
    }
    assert port not in {p["port"] for p in service["spec"]["ports"]}
    assert objects(document, "Route")["gateway"]["spec"]["port"]["targetPort"] == "http"
