"""Reference solutions of lesson 12's exercises (notebooks never import this; tests/test_lesson12.py runs them)."""
from __future__ import annotations

import psycopg

from helpers.lessons import backup
from helpers.lessons.solutions import solution


@solution("12.restore_lines")
def _restore_lines(conn: psycopg.Connection) -> None:
    backup.restore_table_as(conn, backup.exercise_dump_path(conn), "ex_invoice_line", "ex_restored")
    # only what the accident deleted: rows of the dump that match its condition and are missing now
    conn.execute("""INSERT INTO ex_invoice_line
        SELECT r.* FROM ex_restored AS r
        WHERE r.quantity > 1
          AND NOT EXISTS (SELECT 1 FROM ex_invoice_line AS l WHERE l.invoice_line_id = r.invoice_line_id)""")
    conn.execute("DROP TABLE ex_restored")


@solution("12.pitr")
def _pitr(conn: psycopg.Connection):
    sc = backup.exercise_scenario(conn)
    wal = backup.wal_summary(sc.archive)
    xid = int(wal.iloc[0]["xid"])  # the transaction with by far the most deletes
    srv, _ = backup.recover(sc.archive, sc.base, "ex12_answer",
                            target={"recovery_target_xid": str(xid), "recovery_target_inclusive": "off"})
    return srv
