"""Shared fixtures. The server comes from DATABASE_URL, or the embedded PostgreSQL 18 when it is unset."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def server() -> str:
    """'embedded' or 'DATABASE_URL'."""
    from helpers import db

    return db.target().kind


@pytest.fixture
def empty_db():
    """A psycopg autocommit connection to a fresh, empty database of the workbook's own, dropped afterwards."""
    from helpers import db

    with db.scratch_database("t") as conn:
        yield conn


@pytest.fixture(scope="module")
def module_db():
    """One empty scratch database per test module (each DROP DATABASE costs a checkpoint, so not one per test).

    Parallel query is off in it, so plans of the small tables tests build are the same on every machine.
    """
    from helpers import db

    with db.scratch_database("tk") as conn:
        conn.execute("SET max_parallel_workers_per_gather = 0")
        yield conn


@pytest.fixture(scope="session")
def tiny_template() -> str:
    """Name of the loaded 'tiny' template database (built once per server and data version)."""
    from helpers import db

    return db.ensure_template("tiny", progress=False)
