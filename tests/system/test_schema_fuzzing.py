"""Schema fuzzing of the public API: schemathesis against the gateway's merged spec.

One running system (`chomik run`) for the module. Every operation of the merged
`/openapi.json` gets a bounded number of generated requests, valid and invalid
by the spec, as an anonymous caller, a buyer and a seller: no answer is a 5xx,
every answer conforms to its documented status codes, content type and schema,
and every error is `application/problem+json`.

The bound (FUZZ_EXAMPLES, per operation and role) keeps the run to a couple of
minutes; raise it locally to search harder.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import positive_data_acceptance

from chomik.apps import APPS
from chomik.infra import free_port, port_is_free
from tests.system import HOST, base_url
from tests.system.test_run import launch, wait_up

# Starting the whole system is most of the time; a loaded machine needs more. Part of
# `make test-system`; `make test-fuzz` runs it alone (FUZZ_EXAMPLES=50 searches harder).
pytestmark = [pytest.mark.system, pytest.mark.fuzz, pytest.mark.timeout(900)]

GATEWAY = base_url(17000)
PASSWORD = "correct horse battery"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "6"))
ROLES = ("anonymous", "buyer", "seller")
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def system() -> Iterator[dict[str, str]]:
    """The running system and an access token per role."""
    for spec in APPS:
        assert port_is_free(spec.port, HOST), f"port {spec.port} busy before the test"
    data_dir = tempfile.mkdtemp(prefix="chomik-run-")  # reachable by `postgres`
    os.chmod(data_dir, 0o755)
    ports = {
        "EMBEDDED_PG_PORT": str(free_port()),
        "EMBEDDED_KAFKA_PORT": str(free_port()),
    }
    launcher = launch(ports, str(data_dir))
    try:
        wait_up(launcher)
        yield {role: _token(role) for role in ROLES if role != "anonymous"}
    finally:
        launcher.send_signal(signal.SIGTERM)
        launcher.wait(timeout=60)
        launcher.stdout.close()
        shutil.rmtree(data_dir, ignore_errors=True)


def _token(role: str) -> str:
    email = f"fuzz-{role}-{uuid.uuid4().hex[:8]}@example.com"
    body = {"email": email, "password": PASSWORD, "name": role, "role": role}
    api = f"{GATEWAY}/api/v1/auth"
    assert requests.post(f"{api}/register", json=body, timeout=60).status_code == 201
    login = requests.post(
        f"{api}/login", json={"email": email, "password": PASSWORD}, timeout=60
    )
    assert login.status_code == 200, login.text
    return str(login.json()["access_token"])


def fuzz(schema: schemathesis.BaseSchema, headers: dict[str, str]) -> list[str]:
    """Run every operation's generated cases; the failures, one line each."""
    found: list[str] = []
    session = requests.Session()
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @hypothesis.settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
                derandomize=True,
            )
            @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
            def run(case: schemathesis.Case) -> None:
                response = case.call(
                    base_url=GATEWAY, session=session, headers=headers, timeout=60
                )
                if is_gunicorn_limit(response):
                    return  # documented in docs/api.md, "HTTP conventions"
                if response.status_code >= 400:
                    (content_type,) = response.headers.get("content-type") or [""]
                    assert content_type.startswith(PROBLEM), (
                        f"{response.status_code} is not a problem: {response.text[:200]}"
                    )
                if case.meta and case.meta.generation.mode is GenerationMode.POSITIVE:
                    # Input valid by the spec passes validation; a business rule may
                    # still refuse it (the carrier does not serve a country: 422).
                    problem = response.json() if response.status_code == 422 else {}
                    assert problem.get("type") != "validation-error", (
                        f"valid by the spec, refused: {response.text[:300]}"
                    )
                case.validate_response(
                    response,
                    headers=headers,
                    excluded_checks=[positive_data_acceptance],
                )

            try:
                run()
            except hypothesis.errors.Unsatisfiable:
                continue  # no input to make invalid (a GET without parameters)
            except (AssertionError, FailureGroup) as exc:
                found.append(f"{operation.label} [{mode.value}]: {exc}"[:2000])
    return found


def is_gunicorn_limit(response: Any) -> bool:
    """gunicorn's own answer to a request line or headers past its limits."""
    return response.status_code in (
        400,
        414,
        431,
    ) and response.text.lstrip().startswith("<html>")


@pytest.mark.parametrize("role", ROLES)
def test_no_operation_fails_its_documented_contract(system, role):
    # Unknown query parameters and headers are ignored, as HTTP APIs do: that is
    # no invalid input the services should refuse.
    config = SchemathesisConfig()
    config.projects.default.generation.update(allow_extra_parameters=False)
    schema = schemathesis.openapi.from_url(f"{GATEWAY}/openapi.json", config=config)
    headers = {} if role == "anonymous" else {"Authorization": f"Bearer {system[role]}"}
    failures = fuzz(schema, headers)
    assert not failures, "\n\n".join(failures)
