"""Reference solutions of lesson 01's exercises (notebooks never import this; tests/test_lesson01.py runs them)."""
from __future__ import annotations

import psycopg

from helpers.lessons import schema_design  # noqa: F401  (registers the exercises these solve)
from helpers.lessons.solutions import solution


@solution("01.one_to_one")
def _one_to_one(conn: psycopg.Connection) -> None:
    conn.execute("ALTER TABLE ex_profile ADD CONSTRAINT ex_profile_customer_id_key UNIQUE (customer_id)")


@solution("01.on_delete")
def _on_delete(conn: psycopg.Connection) -> None:
    conn.execute("""
        ALTER TABLE ex_wishlist
            DROP CONSTRAINT ex_wishlist_customer_id_fkey,
            ADD CONSTRAINT ex_wishlist_customer_id_fkey
                FOREIGN KEY (customer_id) REFERENCES customer (customer_id) ON DELETE CASCADE,
            DROP CONSTRAINT ex_wishlist_track_id_fkey,
            ADD CONSTRAINT ex_wishlist_track_id_fkey
                FOREIGN KEY (track_id) REFERENCES track (track_id) ON DELETE RESTRICT""")


@solution("01.updated_at")
def _updated_at(conn: psycopg.Connection) -> None:
    conn.execute("""
        CREATE FUNCTION ex_note_touch() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            NEW.updated_at := now();
            RETURN NEW;
        END $$""")
    conn.execute("CREATE TRIGGER ex_note_touch BEFORE UPDATE ON ex_note FOR EACH ROW EXECUTE FUNCTION ex_note_touch()")
