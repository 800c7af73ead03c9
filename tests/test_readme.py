"""The README's promises: its commands exist and it lists every environment variable."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_lists_every_environment_variable():
    result = subprocess.run(
        [sys.executable, "scripts/settings_table.py", "--check"], cwd=ROOT, check=False
    )
    assert result.returncode == 0, (
        "README is stale: run python scripts/settings_table.py"
    )


def test_readme_commands_are_make_targets():
    makefile = (ROOT / "Makefile").read_text()
    readme = (ROOT / "README.md").read_text()
    for target in (
        "run",
        "test",
        "test-system",
        "test-chaos",
        "install",
        "lint",
        "migrate",
        "benchmark",
    ):
        assert f"make {target}" in readme
        assert f"\n{target}:" in makefile
