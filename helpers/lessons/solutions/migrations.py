"""Reference solutions of notebook 08's exercises (tests/test_lesson08.py runs them; notebooks never import this)."""
from __future__ import annotations

import psycopg

from helpers.lessons import migrations  # noqa: F401  (registers the exercises)
from helpers.lessons.solutions import solution


@solution("08.not_null_column")
def _not_null_column(conn: psycopg.Connection) -> str:
    # a constant default: stored once in the catalog (PostgreSQL 11+), no rewrite, a brief ACCESS EXCLUSIVE lock
    return "ALTER TABLE mig_ex ADD COLUMN plan text NOT NULL DEFAULT 'free'"


@solution("08.index_online")
def _index_online(conn: psycopg.Connection) -> str:
    return "CREATE INDEX CONCURRENTLY mig_ex_customer ON mig_ex (customer_id)"
