"""The tests' switch that SIGKILLs a payment worker at a txcoord phase, once."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from apps.payment.settings import PaymentSettings
from apps.payment.worker import crash_switch
from chomik.settings import SettingsError

REPO = Path(__file__).resolve().parents[3]


def reach(path: Path, *points: str) -> subprocess.CompletedProcess[str]:
    """A process that passes `points` with the switch on `path`, then says done."""
    code = (
        "import sys; from pathlib import Path\n"
        "from apps.payment.worker import crash_switch\n"
        f"hook = crash_switch(Path({str(path)!r}))\n"
        f"for point in {list(points)!r}:\n"
        "    hook(point, 'tx'); print(point, flush=True)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
        timeout=250, check=False,
    )  # fmt: skip


def test_the_process_dies_at_the_named_point_and_the_switch_is_spent(tmp_path):
    switch = tmp_path / "crash"
    switch.write_text("after_decision\n")

    first = reach(switch, "before_decision", "after_decision", "after_commit:orders")

    assert first.returncode == -signal.SIGKILL, first.stderr
    assert first.stdout.split() == ["before_decision"]
    assert not switch.exists()
    (spent,) = tmp_path.glob("crash.*")  # named after the process that took it
    assert spent.read_text().strip() == "after_decision"
    spent_hook = crash_switch(switch)  # the file is gone: nothing happens
    spent_hook("after_decision", "tx")


def test_without_the_file_the_hook_does_nothing(tmp_path):
    crash_switch(tmp_path / "absent")("after_decision", "tx")


def test_production_refuses_the_switch():
    with pytest.raises(SettingsError, match="TXCOORD_CRASH_FILE"):
        PaymentSettings(environment="production", txcoord_crash_file="/tmp/crash")
