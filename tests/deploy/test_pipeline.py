"""Jenkinsfile and pre-commit: the pipeline calls make targets only (STYLE §14)."""

from __future__ import annotations

import re

from tests.deploy.manifests import ROOT, TEMPLATE, load_yaml

STAGES = [
    "make lint",
    "make test",
    "make test-system",
    "make test-chaos",
    "make test-fuzz",
    "make image push",
    "make deploy",
]
HOOKS = {
    "ruff-check",
    "ruff-format",
    "check-merge-conflict",
    "debug-statements",
    "trailing-whitespace",
    "end-of-file-fixer",
    "codespell",
}


def make_targets() -> dict[str, str]:
    """Each Makefile target with its recipe."""
    text = (ROOT / "Makefile").read_text()
    found = {}
    for match in re.finditer(r"^([a-z-]+):[^\n]*\n((?:\t[^\n]*\n)*)", text, re.M):
        found[match.group(1)] = match.group(2)
    return found


def test_jenkins_runs_the_stages_in_order_through_make():
    commands = re.findall(r"\bsh\s+'([^']*)'", (ROOT / "Jenkinsfile").read_text())
    assert commands == STAGES
    targets = make_targets()
    for command in commands:
        for target in command.split()[1:]:
            assert target in targets, target


def test_make_deploy_processes_and_applies_the_template():
    recipe = make_targets()["deploy"]
    assert "oc process -f " + TEMPLATE.relative_to(ROOT).as_posix() in recipe
    assert "| oc apply -f -" in recipe
    assert "pipefail" in recipe
    assert "docker/Dockerfile" in make_targets()["image"]


def test_pre_commit_runs_the_hooks_of_the_house_style():
    config = load_yaml(ROOT / ".pre-commit-config.yaml")
    hooks = {hook["id"] for repo in config["repos"] for hook in repo["hooks"]}
    assert hooks == HOOKS
    for repo in config["repos"]:
        assert re.fullmatch(r"v\d+\.\d+\.\d+", repo["rev"]), repo["repo"]
