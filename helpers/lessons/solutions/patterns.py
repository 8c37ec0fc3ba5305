"""Reference solutions of lesson 10's exercises (notebooks/10_patterns.ipynb); notebooks never import this.

``tests/test_lesson10.py`` proves for each one that the check fails on the starting state and passes
after the solution. Registered with :func:`helpers.lessons.solutions.solution` on import.
"""
from __future__ import annotations

import psycopg

from helpers.lessons import patterns  # noqa: F401  (registers the exercises these solve)
from helpers.lessons.solutions import solution


@solution("10.live_email")
def live_email(conn: psycopg.Connection) -> None:
    """Drop the table-wide constraint; a partial unique index covers only the live rows."""
    conn.execute("ALTER TABLE ex10_customer DROP CONSTRAINT ex10_customer_email_key")
    conn.execute("CREATE UNIQUE INDEX ex10_customer_live_email_key ON ex10_customer (email) WHERE deleted_at IS NULL")


@solution("10.no_orphans")
def no_orphans(conn: psycopg.Connection) -> None:
    """An exclusive arc: one nullable foreign key per target, cascades, exactly one set; the generic pair goes."""
    conn.execute("ALTER TABLE ex10_comment ADD COLUMN track_id int REFERENCES ex10_track ON DELETE CASCADE, "
                 "ADD COLUMN album_id int REFERENCES ex10_album ON DELETE CASCADE")
    conn.execute("UPDATE ex10_comment SET track_id = CASE WHEN commentable_type = 'track' THEN commentable_id END, "
                 "album_id = CASE WHEN commentable_type = 'album' THEN commentable_id END")
    conn.execute("ALTER TABLE ex10_comment DROP COLUMN commentable_type, DROP COLUMN commentable_id, "
                 "ADD CONSTRAINT ex10_comment_one_target CHECK (num_nonnulls(track_id, album_id) = 1)")
