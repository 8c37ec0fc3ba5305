"""Reference solutions of lesson 13's exercises (notebooks never import this; tests/test_lesson13.py runs them)."""
from __future__ import annotations

import psycopg

from helpers.lessons import checklist  # noqa: F401  (registers the exercises these solve)
from helpers.lessons.solutions import solution


@solution("13.clean_schema")
def _clean_schema(conn: psycopg.Connection) -> None:
    conn.execute("""
        ALTER TABLE ex_store.orders ADD PRIMARY KEY (order_id);
        ALTER TABLE ex_store.products ALTER COLUMN price TYPE numeric(10, 2);
        ALTER TABLE ex_store.products ADD CHECK (price >= 0);
        ALTER TABLE ex_store.orders ADD CHECK (quantity > 0);
        ALTER TABLE ex_store.orders ALTER COLUMN ordered_at TYPE timestamptz USING ordered_at AT TIME ZONE 'UTC';
        CREATE INDEX ON ex_store.orders (product_id)""")


@solution("13.orphans")
def _orphans(conn: psycopg.Connection) -> None:
    conn.execute("""
        DELETE FROM ex_log.plays p WHERE NOT EXISTS (SELECT 1 FROM ex_log.tracks t WHERE t.id = p.track_id);
        ALTER TABLE ex_log.plays ADD FOREIGN KEY (track_id) REFERENCES ex_log.tracks (id)""")
