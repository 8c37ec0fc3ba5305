"""Lesson 07 (transactions): the anomalies happen in a fixed order, the fixes lose nothing, the exercises judge right.

Counts that the step order decides are asserted exactly; counts that depend on scheduling (lost updates of the
naive code) only as "more than zero", and the fixes as exactly zero.
"""
from __future__ import annotations

import pytest

from helpers.exercises import NO_ANSWER, get
from helpers.lessons import transactions as l7
from helpers.lessons.solutions import solve
from helpers.lessons.solutions import transactions as sol
from helpers.sessions import Sessions


@pytest.fixture(scope="module")
def les(tiny_template):
    from helpers import db

    with db.temporary_lesson("t07_tx") as lesson:
        lesson.ids = l7.setup_tables(lesson.conn)
        yield lesson


def _stock(les, tid=None):
    tid = tid or les.ids["track"]
    return les.scalar("SELECT in_stock FROM stock WHERE track_id = %(t)s", {"t": tid})


def test_repeatable_read_refuses_the_concurrent_update(les):
    t = les.ids["track"]
    les.run("UPDATE stock SET in_stock = 100 WHERE track_id = %(t)s", {"t": t})
    with Sessions(les, "A", "B") as s:
        s.run("A", "BEGIN ISOLATION LEVEL REPEATABLE READ")
        assert s.run("A", f"SELECT in_stock FROM stock WHERE track_id = {t}").value == 100
        s.run("B", f"UPDATE stock SET in_stock = in_stock - 1 WHERE track_id = {t}")
        step = s.run("A", f"UPDATE stock SET in_stock = in_stock - 1 WHERE track_id = {t}")
        assert step.sqlstate == "40001"
        assert s.run("A", "COMMIT").statusmessage == "ROLLBACK"
    assert _stock(les) == 99


@pytest.mark.parametrize("level,refused,on_duty", [("READ COMMITTED", False, 0), ("REPEATABLE READ", False, 0),
                                                    ("SERIALIZABLE", True, 1)])
def test_write_skew_is_refused_only_by_serializable(les, level, refused, on_duty):
    s = l7.write_skew(les, level)
    assert l7.refused(s) is refused
    assert les.scalar("SELECT count(*) FROM duty WHERE on_duty") == on_duty
    assert sum(st.sqlstate == "40001" for st in s.steps) == (1 if refused else 0)


def test_naive_loses_updates_and_every_fix_loses_none(les):
    runs = {v: l7.hammer(les, v, workers=6, per_worker=25) for v in l7.VARIANTS}
    assert runs["naive read-modify-write"].lost > 0
    for name, r in runs.items():
        if name != "naive read-modify-write":
            assert r.lost == 0, name


def test_queue_does_every_job_once_with_and_without_skip_locked(les):
    for skip in (False, True):
        q = l7.run_queue(les, skip_locked=skip, workers=4, work=0.001, jobs=60)
        assert (q.done, q.distinct, q.left) == (60, 60, 0)


def test_vacuum_counts_with_and_without_an_old_snapshot(les):
    les.run("UPDATE ledger SET total = total + 0")
    assert l7.vacuum_counts(les.conn, "ledger")["removed"] == l7.LEDGER
    with Sessions(les, "A") as s:
        s.run("A", "BEGIN ISOLATION LEVEL REPEATABLE READ")
        s.run("A", "SELECT 1 FROM track LIMIT 1")
        les.run("UPDATE ledger SET total = total + 0")
        held = l7.vacuum_counts(les.conn, "ledger")
        assert (held["removed"], held["not_removable"]) == (0, l7.LEDGER)
    assert l7.vacuum_counts(les.conn, "ledger")["removed"] == l7.LEDGER


def test_with_retry_counts_and_gives_up():
    from psycopg import errors as pgerr

    stats = l7.RetryStats()
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise pgerr.SerializationFailure("x")
        return "ok"

    assert l7.with_retry(flaky, stats=stats, base_delay=0) == "ok"
    assert (stats.attempts, stats.retries, stats.gave_up) == (3, 2, 0)

    def never():
        raise pgerr.DeadlockDetected("x")

    with pytest.raises(pgerr.DeadlockDetected):
        l7.with_retry(never, stats=(st := l7.RetryStats()), attempts=3, base_delay=0)
    assert (st.attempts, st.retries, st.gave_up) == (3, 2, 1)


# ---------------------------------------------------------------------------------------------- exercises

def test_isolation_exercise(les):
    ex = get("07.isolation_level")
    ex.setup(les)
    assert not ex.check(les, NO_ANSWER)
    for wrong, words in [("read committed", "nothing is checked"), ("repeatable read", "different rows"),
                         ("READ UNCOMMITTED", "as READ COMMITTED"), ("snapshot", "not an isolation level")]:
        res = ex.check(les, wrong)
        assert not res and words in res.message, (wrong, res.message)
    assert ex.check(les, solve("07.isolation_level", les.conn))
    assert ex.check(les, "  SERIALIZABLE ")
    assert ex.check(les, "isolation level serializable")
    assert ex.check(les, "SERIALIZABLE;")


def naive_sell(conn, track_id):
    qty = conn.execute("SELECT in_stock FROM stock WHERE track_id = %s", (track_id,)).fetchone()[0]
    conn.execute("UPDATE stock SET in_stock = %s WHERE track_id = %s", (qty - 1, track_id))


def naive_in_transaction(conn, track_id):
    with conn.transaction():
        naive_sell(conn, track_id)


def repeatable_read_no_retry(conn, track_id):
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        naive_sell(conn, track_id)


def repeatable_read_with_retry(conn, track_id):
    l7.with_retry(lambda: repeatable_read_no_retry(conn, track_id), base_delay=0)


def left_open(conn, track_id):
    conn.execute("BEGIN")
    conn.execute("SELECT in_stock FROM stock WHERE track_id = %s FOR UPDATE", (track_id,))
    conn.execute("UPDATE stock SET in_stock = in_stock - 1 WHERE track_id = %s", (track_id,))


def broken_sql(conn, track_id):
    conn.execute("UPDATE stok SET in_stock = in_stock - 1")


def test_sell_exercise_refuses_the_classic_mistakes(les):
    ex = get("07.safe_sell")
    ex.setup(les)
    assert not ex.check(les, NO_ANSWER)
    assert "a function" in ex.check(les, "UPDATE stock ...").message
    for wrong, words in [(naive_sell, "lost update"), (naive_in_transaction, "a transaction alone"),
                         (repeatable_read_no_retry, "40001"), (left_open, "still open"),
                         (broken_sql, "UndefinedTable")]:
        res = ex.check(les, wrong)
        assert not res and words in res.message, (wrong.__name__, res.message)


def test_sell_exercise_accepts_every_correct_form(les):
    ex = get("07.safe_sell")
    res = ex.check(les, solve("07.safe_sell", les.conn))
    assert res and "waited" in res.message
    for right in (sol.sell_atomic, repeatable_read_with_retry):
        assert ex.check(les, right), right.__name__
    assert _stock(les) == 8
