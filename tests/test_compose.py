"""docker-compose.yml cannot be run here (no Docker engine), so it is checked by reading it."""
from __future__ import annotations

from pathlib import Path

import yaml

from helpers.core import server

ROOT = Path(__file__).resolve().parent.parent


def _service() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["postgres"]


def test_compose_runs_postgres_18_with_the_embedded_servers_preload_libraries():
    svc = _service()
    assert svc["image"] == "postgres:18"
    assert f"shared_preload_libraries={server.PRELOAD}" in svc["command"]


def test_compose_binds_only_to_loopback_and_keeps_data_in_a_named_volume():
    svc = _service()
    assert all(str(p).startswith("127.0.0.1:") for p in svc["ports"])
    volume, target = svc["volumes"][0].split(":")
    assert target == "/var/lib/postgresql"  # PostgreSQL 18 images keep data in a versioned subdirectory of it
    assert volume in yaml.safe_load((ROOT / "docker-compose.yml").read_text())["volumes"]
    assert "pg_isready" in " ".join(svc["healthcheck"]["test"])


def test_compose_credentials_come_from_the_environment():
    svc = _service()
    assert svc["environment"]["POSTGRES_PASSWORD"].startswith("${PDW_DB_PASSWORD:?")
    example = (ROOT / ".env.example").read_text()
    assert "PDW_DB_PASSWORD=" in example
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()
