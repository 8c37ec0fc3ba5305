"""Reference solutions of notebook 05's exercises (tests/test_lesson05.py runs them; notebooks never import this)."""
from __future__ import annotations

import psycopg

from helpers.lessons import query_patterns
from helpers.lessons.solutions import solution


@solution("05.keyset_next_page")
def _keyset_next_page(conn: psycopg.Connection) -> str:
    conn.execute("CREATE INDEX IF NOT EXISTS plays_played_at_play_id_idx ON plays (played_at, play_id)")
    return (
        "SELECT play_id, customer_id, track_id, played_at FROM plays\n"
        f"WHERE (played_at, play_id) > {query_patterns.keyset_cursor_text(conn)}\n"
        "ORDER BY played_at, play_id\nLIMIT 20"
    )


@solution("05.upsert_daily")
def _upsert_daily(conn: psycopg.Connection) -> str:
    return (
        "INSERT INTO ex_track_stats (track_id, plays)\n"
        "SELECT track_id, plays FROM ex_daily\n"
        "ON CONFLICT (track_id) DO UPDATE SET plays = ex_track_stats.plays + EXCLUDED.plays"
    )
