"""The alert rules, checked and unit-tested by promtool, each with a runbook.

`promtool` comes with Debian's prometheus package, which `scripts/system-deps.sh`
installs when it may; without it these tests are skipped, saying why.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.manifests import ALERTS, PROMETHEUS, ROOT, load_yaml

RULE_TESTS = ALERTS.with_name("alerts.test.yml")
OPERATIONS = ROOT / "docs" / "operations.md"
PROMTOOL = shutil.which("promtool")

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not installed (Debian: apt-get install prometheus)",
)


def promtool(*args: str | Path, cwd: Path | None = None) -> str:
    assert PROMTOOL is not None
    done = subprocess.run(
        [PROMTOOL, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def rules() -> list[dict]:
    return [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]]


def anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown document."""
    return {
        re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", markdown, re.MULTILINE)
    }


@needs_promtool
def test_the_rules_are_valid():
    assert f"SUCCESS: {len(rules())} rules found" in promtool("check", "rules", ALERTS)


@needs_promtool
def test_every_rule_fires_and_stays_quiet_as_its_unit_tests_say():
    promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)


@needs_promtool
def test_the_compose_prometheus_config_is_valid(tmp_path):
    config = load_yaml(PROMETHEUS)
    config["rule_files"] = [ALERTS.name]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    shutil.copy(ALERTS, tmp_path / ALERTS.name)
    promtool("check", "config", tmp_path / "prometheus.yml")


def test_every_alert_has_a_firing_and_a_quiet_unit_test():
    cases: dict[str, set[bool]] = {}
    for test in load_yaml(RULE_TESTS)["tests"]:
        for case in test["alert_rule_test"]:
            cases.setdefault(case["alertname"], set()).add(bool(case["exp_alerts"]))
    assert {rule["alert"]: {True, False} for rule in rules()} == cases


def test_every_alert_says_what_is_wrong_and_links_its_runbook():
    documented = anchors(OPERATIONS.read_text())
    for rule in rules():
        annotations = rule["annotations"]
        assert annotations["summary"], rule["alert"]
        assert annotations["description"], rule["alert"]
        path, _, anchor = annotations["runbook"].partition("#")
        assert path == "docs/operations.md", rule["alert"]
        assert anchor == rule["alert"].lower(), rule["alert"]
        assert anchor in documented, f"{rule['alert']}: no section #{anchor}"


def test_heading_anchors_are_computed_as_github_does():
    assert anchors("## A two-phase transaction is in doubt\n### ChomikDeadLetters") == {
        "a-two-phase-transaction-is-in-doubt",
        "chomikdeadletters",
    }
