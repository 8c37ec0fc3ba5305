"""Reference solutions of notebook 09's exercises (tests/test_lesson09.py runs them; notebooks never import this)."""
from __future__ import annotations

import psycopg

from helpers.lessons.solutions import solution


@solution("09.fix_first")
def _fix_first(conn: psycopg.Connection) -> int:
    return conn.execute(  # one statement may have a row per combination of parameter types: add them up
        "SELECT min(queryid) FROM pg_stat_statements "
        "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND query NOT LIKE '%pg_stat%' AND query NOT LIKE '%pg_database%' "
        "GROUP BY query ORDER BY sum(total_exec_time) DESC LIMIT 1").fetchone()[0]


@solution("09.unused_index")
def _unused_index(conn: psycopg.Connection) -> str:
    return conn.execute(
        "SELECT s.indexrelname FROM pg_stat_user_indexes s JOIN pg_index i USING (indexrelid) "
        "WHERE s.relname = 'plays' AND s.idx_scan = 0 AND NOT i.indisunique "
        "ORDER BY pg_relation_size(s.indexrelid) DESC LIMIT 1").fetchone()[0]
