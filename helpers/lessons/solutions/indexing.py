"""Reference solutions of lesson 03's exercises (notebooks/03_indexing.ipynb); notebooks never import this.

``tests/test_lesson03.py`` proves for each one that the check fails on the starting state and passes
after the solution. Registered with :func:`helpers.lessons.solutions.solution` on import.
"""
from __future__ import annotations

import psycopg

from helpers.lessons import indexing  # noqa: F401  (registers the exercises these solve)
from helpers.lessons.solutions import solution


@solution("03.index_only_scan")
def index_only_scan(conn: psycopg.Connection) -> None:
    """A covering index (the filter column as key, the returned ones in INCLUDE), then VACUUM."""
    conn.execute("CREATE INDEX ex03_plays_customer_cover_idx ON ex03_plays (customer_id) "
                 "INCLUDE (played_at, ms_played)")
    conn.execute("VACUUM ex03_plays")


@solution("03.redundant_index")
def redundant_index(conn: psycopg.Connection) -> str:
    """A plain index whose key columns are exactly those of a unique index on the same table."""
    row = conn.execute(
        """SELECT i.relname
           FROM pg_index plain JOIN pg_class i ON i.oid = plain.indexrelid
           JOIN pg_index uniq ON uniq.indrelid = plain.indrelid AND uniq.indisunique
                              AND uniq.indexrelid <> plain.indexrelid
                              AND uniq.indkey::text = plain.indkey::text
           WHERE plain.indrelid = 'ex03_customer'::regclass AND NOT plain.indisunique
             AND plain.indexprs IS NULL AND plain.indpred IS NULL""").fetchone()
    return row[0]


@solution("03.column_order")
def column_order(conn: psycopg.Connection) -> None:
    """Equality column first, range column second."""
    conn.execute("CREATE INDEX ex03_log_device_played_at_idx ON ex03_log (device, played_at)")
