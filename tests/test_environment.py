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
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert all("==" in r for r in project), project
