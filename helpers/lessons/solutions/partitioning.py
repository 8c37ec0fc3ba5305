"""Reference solutions of notebook 06's exercises (partitioning); notebooks never import this module.

``tests/test_lesson06.py`` proves that each exercise's check fails on its starting state and passes after these.
"""
from __future__ import annotations

import psycopg

import helpers.lessons.partitioning  # noqa: F401  (registers the exercises these solve)
from helpers.lessons.solutions import solution


@solution("06.prunable_report")
def _prunable_report(conn: psycopg.Connection) -> str:
    return ("SELECT count(*) FROM ex_plays\n"
            "WHERE played_at >= '2025-03-01 00:00+00' AND played_at < '2025-04-01 00:00+00'")


@solution("06.new_month")
def _new_month(conn: psycopg.Connection) -> None:
    with conn.transaction():
        conn.execute("CREATE TABLE ex_log_2026_01 (LIKE ex_log INCLUDING ALL)")
        conn.execute(
            "WITH moved AS (DELETE FROM ex_log_default "
            "WHERE logged_at >= '2026-01-01 00:00+00' AND logged_at < '2026-02-01 00:00+00' RETURNING *) "
            "INSERT INTO ex_log_2026_01 SELECT * FROM moved")
        conn.execute("ALTER TABLE ex_log ATTACH PARTITION ex_log_2026_01 "
                     "FOR VALUES FROM ('2026-01-01 00:00+00') TO ('2026-02-01 00:00+00')")
