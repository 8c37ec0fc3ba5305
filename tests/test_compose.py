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


def test_citus_profile_distributes_the_lessons_orders():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    svc = compose["services"]["citus"]
    assert svc["profiles"] == ["citus"] and svc["image"].startswith("citusdata/citus:")
    assert all(str(p).startswith("127.0.0.1:") for p in svc["ports"])
    assert svc["environment"]["POSTGRES_PASSWORD"].startswith("${PDW_DB_PASSWORD:?")
    mounts = [v.split(":") for v in svc["volumes"]]
    assert mounts[0][0] in compose["volumes"]
    init = [m for m in mounts if m[1].startswith("/docker-entrypoint-initdb.d/")]
    assert len(init) == 1 and (ROOT / init[0][0]).is_file() and init[0][2] == "ro"
    sql = (ROOT / init[0][0]).read_text()
    assert "create_distributed_table('orders', 'customer_id'" in sql
    assert "profiles" not in compose["services"]["postgres"]  # plain `up` still starts postgres only


def test_citus_init_sql_runs_on_plain_postgresql_without_its_citus_lines():
    """What does not need Citus (the schema and the seeded rows) runs on a private server, unchanged."""
    from helpers import private, replicas

    if private.available():
        import pytest

        pytest.skip(private.available())
    sql = (ROOT / "docker/citus/init.sql").read_text()
    plain = "\n".join(ln for ln in sql.splitlines() if not ln.rstrip().endswith("-- citus"))
    assert "citus" not in "\n".join(ln.split("--")[0] for ln in plain.splitlines()).lower()
    with private.spawn("t_citus_sql") as srv, srv.connect() as conn:
        conn.execute(plain)
        assert conn.execute("SELECT count(*), count(DISTINCT customer_id) FROM orders").fetchone() == (20_000, 500)
        cols = conn.execute("SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute "
                            "WHERE attrelid = 'orders'::regclass AND attnum > 0").fetchone()[0]
    assert cols == "order_id,customer_id,ordered_at,total"
    assert "PRIMARY KEY (customer_id, order_id)" in replicas.SHARD_SCHEMA
