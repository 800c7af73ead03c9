"""docker-compose.yml, the Dockerfile and PostgreSQL's init SQL, against the code."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from typing import Any

import pytest

from chomik import cli, migrating
from chomik.apps import APPS, AppSpec
from tests.deploy.manifests import (
    COMPOSE,
    DOCKERFILE,
    PROMETHEUS,
    PUBLIC,
    ROOT,
    chomik_services,
    command_of,
    compose,
    load_yaml,
    services_running,
    variables_read_by_code,
    web_command,
)

INFRASTRUCTURE = ("postgres", "kafka", "prometheus", "grafana")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return compose()


def workers_of(document: dict[str, Any], app: str) -> dict[str, dict[str, Any]]:
    return services_running(document, "chomik", "worker", app)


def test_compose_holds_infrastructure_and_migrations(document):
    services = document["services"]
    assert set(INFRASTRUCTURE) <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == (
        "broker,controller"
    )
    migrate = services_running(document, "chomik", "db", "upgrade", "all")
    assert list(migrate) == ["migrate"]


@pytest.mark.parametrize("spec", APPS, ids=lambda s: s.name)
def test_every_app_has_a_web_service(document, spec: AppSpec):
    services = services_running(document, *web_command(spec.name))
    assert list(services) == [spec.name], "one web service per app, named after it"
    service = services[spec.name]
    ready = " ".join(service["healthcheck"]["test"])
    assert f"127.0.0.1:{spec.port}/health/ready" in ready
    for mapping in service.get("ports", []):
        assert str(mapping).split(":")[-2:] == [str(spec.port), str(spec.port)]


def test_every_process_runs_the_one_image(document):
    services = chomik_services(document)
    images = {
        (s["image"], json.dumps(s["build"], sort_keys=True)) for s in services.values()
    }
    assert len(images) == 1, images
    build = next(iter(services.values()))["build"]
    assert (ROOT / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE


def test_only_the_gateway_and_the_mocks_publish_ports(document):
    services = document["services"]
    publishing = {n for n, s in chomik_services(document).items() if s.get("ports")}
    assert publishing == PUBLIC
    assert not services["postgres"].get("ports")
    assert not services["kafka"].get("ports")
    for name in ("prometheus", "grafana"):  # dashboards: on the host's loopback only
        assert all(str(p).startswith("127.0.0.1:") for p in services[name]["ports"])


def test_workers_match_the_apps_table(document):
    apps = {spec.name: spec for spec in APPS}
    workers = {
        name: service
        for name, service in chomik_services(document).items()
        if command_of(service)[1] == "worker"
    }
    assert workers, "compose runs the workers"
    for service in workers.values():
        assert command_of(service)[2] in apps
    for spec in APPS:
        if spec.worker is not None:
            assert len(workers_of(document, spec.name)) == spec.worker_replicas
    replica_ids = [s["environment"]["SCHEDULER_REPLICA_ID"] for s in workers.values()]
    assert len(set(replica_ids)) == len(replica_ids), "every replica has its own id"


def test_payment_worker_runs_two_replicas_with_distinct_ids(document):
    replicas = workers_of(document, "payment")
    assert len(replicas) == 2
    ids = {s["environment"]["SCHEDULER_REPLICA_ID"] for s in replicas.values()}
    assert len(ids) == 2


def test_processes_start_after_migrations_and_kafka(document):
    for name, service in chomik_services(document).items():
        if name == "migrate":
            assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
            continue
        depends = service["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["kafka"]["condition"] == "service_healthy"


def test_migrate_reaches_every_database(document):
    environment = document["services"]["migrate"]["environment"]
    for name in migrating.DATABASES:
        url = environment[f"{name.upper()}_DATABASE_URL"]
        assert url.endswith(f"@postgres:5432/{migrating.database_name(name)}")


def test_each_process_uses_its_own_database(document):
    for name, service in chomik_services(document).items():
        if name == "migrate":
            continue
        environment = service["environment"]
        app = command_of(service)[2]
        assert environment["DATABASE_URL"].endswith(f"/chomik_{app}")
        for variable, value in environment.items():
            if variable.endswith("_DATABASE_URL"):
                database = variable.removesuffix("_DATABASE_URL").lower()
                assert value.endswith(f"/{migrating.database_name(database)}")
    payment = document["services"]["payment"]["environment"]
    assert {"ORDERS_DATABASE_URL", "TXCOORD_DATABASE_URL"} <= set(payment)


def test_processes_reach_each_other_by_service_name(document):
    ports = {spec.name: spec.port for spec in APPS}
    for service in chomik_services(document).values():
        environment = service["environment"]
        assert environment["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert environment["JWKS_URL"] == (
            f"http://gateway:{ports['gateway']}/api/v1/auth/jwks"
        )
        assert environment["SERVICE_TOKEN_SECRET"]
        assert environment["ENVIRONMENT"]
        for variable, value in environment.items():
            app = variable.removesuffix("_URL").lower()
            if variable.endswith("_URL") and app in ports:
                assert value == f"http://{app}:{ports[app]}", variable


def test_only_web_processes_have_a_prometheus_directory(document):
    for service in chomik_services(document).values():
        has_dir = "PROMETHEUS_MULTIPROC_DIR" in service["environment"]
        assert has_dir == (command_of(service)[1] == "web")


def test_every_variable_set_is_read_by_the_code(document):
    known = variables_read_by_code()
    for name, service in chomik_services(document).items():
        unknown = set(service["environment"]) - known
        assert not unknown, f"{name} sets variables nothing reads: {sorted(unknown)}"


def test_postgres_allows_prepared_transactions(document):
    command = " ".join(command_of(document["services"]["postgres"]))
    match = re.search(r"max_prepared_transactions=(\d+)", command)
    assert match, command
    assert int(match.group(1)) > 0


def test_init_sql_creates_every_database(document):
    mounts = [
        str(v).split(":")
        for v in document["services"]["postgres"]["volumes"]
        if "/docker-entrypoint-initdb.d/" in str(v)
    ]
    assert len(mounts) == 1
    sql = (ROOT / mounts[0][0]).read_text()
    created = set(re.findall(r"CREATE DATABASE (\w+);", sql))
    assert created == {migrating.database_name(n) for n in migrating.DATABASES}


def _dockerfile() -> list[tuple[str, str]]:
    lines = DOCKERFILE.read_text().replace("\\\n", " ").splitlines()
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
        for line in lines
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_dockerfile_installs_the_repository_as_a_non_root_user():
    instructions = _dockerfile()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    assert ("WORKDIR", "/app") in instructions
    assert any(k == "RUN" and "pip install -e ." in v for k, v in instructions)
    users = [v for k, v in instructions if k == "USER"]
    assert users
    assert users[-1] not in {"root", "0"}
    copied = {
        v.split()[-2] for k, v in instructions if k == "COPY" and len(v.split()) == 2
    }
    assert {"chomik", "migrations", "docker/gunicorn.conf.py"} <= copied
    for source in copied:
        assert (ROOT / source).exists(), source


def test_dockerfile_command_runs_a_web_process():
    commands = [json.loads(v) for k, v in _dockerfile() if k == "CMD"]
    assert not [v for k, v in _dockerfile() if k == "ENTRYPOINT"]
    command = commands[-1]
    assert command[:2] == ["chomik", "web"]
    assert command == web_command(command[2])
    assert command[2] in {spec.name for spec in APPS}


def test_gunicorn_conf_is_where_the_image_puts_it():
    assert cli.GUNICORN_CONF.is_file()
    assert cli.GUNICORN_CONF.relative_to(ROOT).as_posix() == "docker/gunicorn.conf.py"


def test_every_worker_is_probed_on_its_metrics_port(document):
    workers = {
        name: service
        for name, service in chomik_services(document).items()
        if command_of(service)[1] == "worker"
    }
    assert len(workers) == sum(s.worker_replicas for s in APPS if s.worker)
    for name, service in workers.items():
        environment = service["environment"]
        assert environment["METRICS_HOST"] == "0.0.0.0", name
        port = environment["METRICS_PORT"]
        ready = " ".join(service["healthcheck"]["test"])
        assert f"127.0.0.1:{port}/health/ready" in ready, name


def test_prometheus_scrapes_every_worker_on_its_metrics_port(document):
    workers = {
        name: service
        for name, service in chomik_services(document).items()
        if command_of(service)[1] == "worker"
    }
    (job,) = [
        j
        for j in load_yaml(PROMETHEUS)["scrape_configs"]
        if j["job_name"] == "chomik-workers"
    ]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    scraped = {
        target: group["labels"]["app"]
        for group in job["static_configs"]
        for target in group["targets"]
    }
    assert scraped == {
        f"{name}:{service['environment']['METRICS_PORT']}": command_of(service)[2]
        for name, service in workers.items()
    }


@pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="docker-compose not installed (Debian: apt-get install docker-compose)",
)
def test_docker_compose_validates_the_file():
    done = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
