"""environment.yml (conda/Binder) must pin exactly what pyproject.toml pins."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _norm(req: str) -> str:
    return re.sub(r"\s+", "", req.split("#")[0]).lower()


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env_lines = (ROOT / "environment.yml").read_text().splitlines()
    pip_reqs = [_norm(line.strip()[2:]) for line in env_lines if line.strip().startswith("- ") and "==" in line]
    assert sorted(pip_reqs) == sorted(_norm(r) for r in project)


def test_every_dependency_is_pinned_exactly():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    every = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    assert all("==" in r for r in every), every


def test_test_tools_are_an_extra_not_a_learner_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[\[=]", r)[0].lower() for r in project["dependencies"]}
    tools = {re.split(r"[\[=]", r)[0].lower() for r in project["optional-dependencies"]["test"]}
    assert {"pytest", "nbval", "pytest-xdist", "playwright"} <= tools and not tools & names
    assert ".[test]" in (ROOT / "Makefile").read_text()
