"""helpers.sessions: steps in a fixed order, waiting observed (never assumed), clear errors, deterministic timeline."""
from __future__ import annotations

import time

import pytest

from helpers.core.errors import WorkbookError
from helpers.sessions import Sessions, Step, render_timeline


@pytest.fixture
def conn(module_db):
    module_db.execute("DROP TABLE IF EXISTS item")
    module_db.execute("CREATE TABLE item (id int PRIMARY KEY, qty int NOT NULL)")
    module_db.execute("INSERT INTO item VALUES (1, 10), (2, 20)")
    return module_db


def test_run_returns_when_waiting_and_wait_finishes(conn):
    with Sessions(conn, "A", "B") as s:
        s.run("A", "BEGIN")
        s.run("A", "UPDATE item SET qty = qty - 1 WHERE id = 1")
        step = s.run("B", "UPDATE item SET qty = qty - 1 WHERE id = 1")
        assert step.status == "waiting" and step.blocked_by == ["A"]
        assert s.blockers("B") == ["A"] and s.blockers("A") == []
        rows = s.locks()
        assert {"session": "B", "locktype": "transactionid", "relation": "", "mode": "ShareLock",
                "granted": False} in rows
        assert "NO (waiting)" in s.lock_table()
        with pytest.raises(WorkbookError, match="still waiting"):
            s.run("B", "SELECT 1")
        s.run("A", "COMMIT")
        assert s.wait("B").statusmessage == "UPDATE 1"
        assert s.run("B", "SELECT qty FROM item WHERE id = 1").value == 8
    assert [st.session for st in s.steps] == ["A", "A", "B", "A", "B", "B"]
    assert s.steps[4].status == "resumed"


def test_timeline_is_deterministic_and_shows_errors(conn):
    def scenario():
        with Sessions(conn, "A", "B") as s:
            s.run("A", "BEGIN")
            s.run("A", "SELECT qty FROM item WHERE id = 2")
            s.run("B", "SELEC 1")
            s.run("A", "COMMIT")
        return s.timeline(width=30)

    first, second = scenario(), scenario()
    assert first == second
    assert "ERROR 42601" in first and "→ 20" in first
    assert first.splitlines()[0].split("|")[1].strip() == "A"


def test_a_statement_that_neither_finishes_nor_waits_on_a_lock_times_out(conn):
    with Sessions(conn, "A", wait_timeout=0.5) as s:
        with pytest.raises(WorkbookError, match="neither finished nor started waiting on a lock within 0.5 s"):
            s.run("A", "SELECT pg_sleep(5)")
        assert s.run("A", "SELECT 1").value == 1   # the cancelled statement left the session usable


def test_lock_timeout_ends_a_wait_with_55P03(conn):
    with Sessions(conn, "A", "B", lock_timeout="200ms") as s:
        s.run("A", "BEGIN")
        s.run("A", "UPDATE item SET qty = 0 WHERE id = 2")
        s.run("B", "UPDATE item SET qty = 1 WHERE id = 2")
        assert s.wait("B").sqlstate == "55P03"


def test_close_cancels_a_waiting_session_and_closes_all_connections(conn):
    s = Sessions(conn, "A", "B")
    s.run("A", "BEGIN")
    s.run("A", "UPDATE item SET qty = 0 WHERE id = 1")
    s.run("B", "UPDATE item SET qty = 1 WHERE id = 1")
    pids = [s.pid("A"), s.pid("B")]
    s.close()
    deadline = time.monotonic() + 10
    while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)).fetchone()[0]:
        assert time.monotonic() < deadline, "the sessions' server processes did not end"
        time.sleep(0.02)  # polling the server until the backends have exited
    with pytest.raises(WorkbookError, match="closed"):
        s.run("A", "SELECT 1")


def test_unknown_session_and_duplicate_names(conn):
    with Sessions(conn, "A") as s:
        with pytest.raises(WorkbookError, match="no session 'Z'"):
            s.run("Z", "SELECT 1")
    with pytest.raises(ValueError):
        Sessions(conn, "A", "A")


def test_render_timeline_without_a_server():
    steps = [Step(1, "A", "BEGIN", state="done", statusmessage="BEGIN"),
             Step(2, "B", "UPDATE t SET x = 1", waited=True, blocked_by=["A"], done_at=4),
             Step(3, "A", "COMMIT", state="done", statusmessage="COMMIT"),
             Step(4, "B", "", state="resumed")]
    assert steps[1].status == "waiting"
    steps[1].state, steps[1].statusmessage = "done", "UPDATE 1"
    text = render_timeline(steps, ["A", "B"], width=40)
    assert "⏳ waits for A" in text and "↳ step 2 finished: UPDATE 1" in text
    assert len(text.splitlines()) == 2 + 5   # header, rule; the UPDATE takes two lines


def test_a_session_ended_by_the_server_says_so_in_one_line(conn):
    with Sessions(conn, "C") as s:
        s.run("C", "SET idle_in_transaction_session_timeout = '300ms'")
        s.run("C", "BEGIN")
        s.run("C", "SELECT 1")
        s.wait_gone("C")
        step = s.run("C", "SELECT 1")
        assert step.closed and step.outcome() == "ERROR: the server closed the connection"
        with pytest.raises(WorkbookError, match="closed by the server"):
            s.run("C", "SELECT 1")
