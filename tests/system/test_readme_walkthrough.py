"""The README's walk-through, run as written against the running system."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import pytest

from chomik.apps import APPS
from chomik.infra import port_is_free
from tests.system import HOST
from tests.system.test_run import data_dir, launch, ports, wait_up  # noqa: F401

pytestmark = pytest.mark.system

README = Path(__file__).resolve().parents[2] / "README.md"


def walkthrough() -> str:
    """The shell block between the README's walkthrough markers."""
    found = re.search(
        r"<!-- walkthrough -->\s*```sh\n(.*?)```\s*<!-- /walkthrough -->",
        README.read_text(),
        re.S,
    )
    assert found, "the README has no walk-through block"
    return found.group(1)


def test_the_readme_walkthrough_buys_a_pair_and_it_is_delivered(
    ports,  # noqa: F811 - the launcher's fixtures
    data_dir,  # noqa: F811
):
    for spec in APPS:
        assert port_is_free(spec.port, HOST), f"port {spec.port} busy before the test"
    launcher = launch(ports, data_dir)
    try:
        wait_up(launcher)
        run = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", walkthrough().replace("127.0.0.1", HOST)],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    finally:
        launcher.send_signal(signal.SIGTERM)
        launcher.communicate(timeout=90)
    assert run.returncode == 0, run.stderr + run.stdout
    assert run.stdout.split()[0] == "SUCCEEDED", (
        run.stdout
    )  # what the bank says of the payment
    assert run.stdout.rstrip().endswith("order DELIVERED"), run.stdout
