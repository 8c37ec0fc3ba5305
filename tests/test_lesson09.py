"""Lesson 09 (monitoring): the app's exact statement counts, what the statistics views show, the lock wait, and the
exercises (each refuses the classic wrong answers with a hint that names the mistake)."""
from __future__ import annotations

import numpy as np
import pytest

import helpers.lessons.solutions.monitoring  # noqa: F401  (registers the reference solutions)
from helpers.exercises import NO_ANSWER, get
from helpers.lessons import monitoring as m
from helpers.lessons.solutions import solve

SMALL = {"recent": 30, "record": 10, "rate": 12, "report": 1}


@pytest.fixture(scope="module")
def les(tiny_template):
    """A lesson database on the tiny scale with the planted index and one run of the unfixed app."""
    from helpers import db

    with db.temporary_lesson("t09_ex") as lesson:
        assert m.stat_statements(lesson), "pg_stat_statements must be preloaded on the test servers"
        m.plant(lesson)
        with m.App(lesson) as app:
            requests = app.plan(seed=3, mix=SMALL)
            expected = m.expected_statements(lesson, requests, fixed=False)
            m.reset_own_statements(lesson)
            temp0 = m.temp_files(lesson)
            lesson.workload = app.run(requests, progress=False)
            lesson.spilled = m.temp_files(lesson) - temp0
            lesson.expected = expected
        yield lesson


def test_the_app_sends_exactly_the_statements_the_data_predicts(les):
    w = les.workload
    assert w.statements == les.expected
    assert w.statements_by_kind()["record"] == 10 and w.statements_by_kind()["report"] == 1
    assert w.statements_by_kind()["recent"] > 30  # the N+1: more than one per page


def test_pg_stat_statements_shows_each_planted_problem(les):
    rows = m.top_statements(les, "total", 100)
    recent, lazy = (m.statement_of(rows, k) for k in ("recent", "n_plus_one"))
    assert recent["calls"] == 30 and rows[0]["queryid"] == recent["queryid"]
    assert lazy["calls"] == les.expected - sum(SMALL.values()) and lazy["rows"] == lazy["calls"]
    assert m.top_statements(les, "calls", 1)[0]["queryid"] == lazy["queryid"]
    assert les.spilled > 0  # the DISTINCT ON sort spills even at tiny scale (pg_stat_database.temp_files)
    # the report ran once: a busy shared server may have evicted it already (pg_stat_statements.max)
    report = m.statement_of(rows, "report")
    assert report is None or report["temp_blks_written"] > 0
    server = sum(m.statement_of(rows, k)["calls"] for k in ("recent", "n_plus_one", "record", "rate"))
    assert server == les.workload.statements - 1


def test_top_statements_adds_up_one_text_split_by_parameter_types(les):
    # psycopg sends 7 as smallint and 40,000 as integer: two queryids for one text (what workshop-scale ids cause)
    for customer_id in (7, 40_000, 8):
        les.conn.execute("SELECT count(*) AS split_probe FROM plays WHERE customer_id = %s", (customer_id,)).fetchall()
    probe = [r for r in m.top_statements(les, "calls", 1000) if "split_probe" in r["query"]]
    assert len(probe) == 1, probe
    p = probe[0]
    assert p["entries"] == 2 and p["calls"] == 3 and len(p["queryids"]) == 2 and p["queryid"] == min(p["queryids"])
    raw = les.conn.execute("SELECT sum(calls), sum(total_exec_time), sum(rows) FROM pg_stat_statements "
                           "WHERE dbid = %s AND queryid = ANY(%s)", (m.dbid(les), p["queryids"])).fetchone()
    assert (p["calls"], p["rows"]) == (raw[0], raw[2]) == (3, 3)
    assert p["total_exec_time"] == pytest.approx(raw[1]) and p["mean_exec_time"] == pytest.approx(raw[1] / 3)


def test_reset_touches_only_this_database(les):
    from helpers import db

    with db.scratch_database("t09_other") as other:
        other.execute("SELECT 42 AS untouched_by_lesson_09").fetchall()
        other_oid = other.execute("SELECT oid FROM pg_database WHERE datname = current_database()").fetchone()[0]
        count = "SELECT count(*) FROM pg_stat_statements WHERE dbid = %(d)s"
        assert les.scalar(count, {"d": other_oid}) > 0
        les.run("SELECT 1 AS lesson_statement")
        m.reset_own_statements(les)
        assert les.scalar(count, {"d": other_oid}) > 0  # another database keeps its statistics
        assert les.scalar(count + " AND query LIKE '%%lesson_statement%%'", {"d": m.dbid(les)}) == 0
    # the workload's rows are gone now: run it again for the tests that follow
    with m.App(les) as app:
        les.workload = app.run(app.plan(seed=3, mix=SMALL), progress=False)


def test_a_failing_request_ends_in_one_sentence(les):
    from helpers.core.errors import WorkbookError

    with m.App(les) as app:
        app.report = lambda session: session.execute(m.text("SELECT * FROM no_such_table")).all()
        with pytest.raises(WorkbookError, match=r"^A request of the app failed: .*no_such_table"):
            app.run([m.Request("report", {})], progress=False)


def test_workload_percentiles_and_summary():
    reqs = [m.Request("rate", {}, seconds=s, statements=1) for s in (0.001, 0.002, 0.003, 0.004, 0.1)]
    w = m.Workload(reqs, clients=2)
    assert w.p50 == pytest.approx(0.003) and w.per_request == 1.0
    assert "5 requests from 2 clients: 5 statements (1.00 per request" in w.summary()


class _FakeConn:
    """Answers stat_statements()'s three questions the way a server without the module would."""

    def __init__(self, shipped: bool, loaded: bool):
        self.shipped, self.loaded = shipped, loaded

    def execute(self, query, params=None):
        import psycopg

        class _Cur:
            def __init__(self, rows):
                self.rows = rows

            def fetchone(self):
                return self.rows[0]

            def fetchall(self):
                return self.rows

        if "pg_available_extensions" in query:
            return _Cur([(1 if self.shipped else 0,)])
        if query.startswith("CREATE EXTENSION"):
            return _Cur([])
        if not self.loaded:
            raise psycopg.errors.ObjectNotInPrerequisiteState("pg_stat_statements must be loaded via ...")
        return _Cur([(1,)])


@pytest.mark.parametrize("shipped, loaded, words", [
    (False, False, "does not ship pg_stat_statements"),
    (True, False, "add it to shared_preload_libraries"),
    (True, True, "is loaded and installed"),
])
def test_missing_pg_stat_statements_is_said_in_one_sentence(shipped, loaded, words):
    a = m.stat_statements(_FakeConn(shipped, loaded))
    assert bool(a) == (shipped and loaded) and words in a.message and "\n" not in a.message


def test_lock_wait_is_observed_by_polling(les):
    wait = m.lock_wait_demo(les)
    states = {a["application_name"].rsplit(":", 1)[1]: a for a in wait.activity}
    assert wait.blocking == [wait.holder_pid] and wait.waiter_finished
    assert states["A"]["state"] == "idle in transaction"
    assert (states["B"]["wait_event_type"], states["B"]["wait_event"]) == ("Lock", "transactionid")
    assert wait.not_granted == [("transactionid", "ShareLock")]


def test_auto_explain_shows_the_plan(les):
    customer = les.scalar("SELECT min(customer_id) FROM customer")
    plan = m.auto_explain_plan(les, "SELECT * FROM plays WHERE customer_id = %(c)s", {"c": customer}, min_ms=0)
    assert "Seq Scan on plays" in plan


def test_checkpoint_figures_by_version(les):
    fig = m.checkpoint_figures(les)
    assert fig["view"] == ("pg_stat_checkpointer" if les.conn.info.server_version >= 170000 else "pg_stat_bgwriter")


# ---------------------------------------------------------------------------------------------- exercises

def test_fix_first(les):
    ex = get("09.fix_first")
    ex.setup(les)
    assert not ex.check(les, NO_ANSWER)
    right = solve("09.fix_first", les.conn)
    assert ex.check(les, right) and ex.check(les, np.int64(right))
    rows = m.top_statements(les, "total", 100)
    assert right in m.statement_of(rows, "recent")["queryids"]
    lazy = m.statement_of(rows, "n_plus_one")["queryid"]
    refused = ex.check(les, lazy)
    assert not refused and "called most often" in refused.message and "total_exec_time" in refused.message
    by_mean = m.top_statements(les, "mean", 1)[0]["queryid"]
    if by_mean != right:
        refused = ex.check(les, by_mean)
        assert not refused and "slowest per call" in refused.message
    assert "No statement of this database" in ex.check(les, 12345).message
    assert "not a str" in ex.check(les, "SELECT ...").message
    # A page view for customer 40,000 (none at tiny: no rows, no N+1) sends its id as integer, not smallint: the
    # page's statement now has two rows, and the queryid of either one is accepted.
    with m.App(les) as app:
        app.run([m.Request("recent", {"customer_id": 40_000})], progress=False)
    recent = m.statement_of(m.top_statements(les, "total", 100), "recent")
    assert recent["entries"] == 2, recent
    assert ex.check(les, max(recent["queryids"])) and ex.check(les, min(recent["queryids"]))


def test_unused_index(les):
    ex = get("09.unused_index")
    ex.setup(les)
    assert not ex.check(les, NO_ANSWER)
    right = solve("09.unused_index", les.conn)
    assert right == m.UNUSED_INDEX
    assert ex.check(les, right) and ex.check(les, f"  public.{right.upper()} ")
    pkey = ex.check(les, "plays_pkey")
    assert not pkey and "enforces the primary key" in pkey.message
    unique = ex.check(les, "customer_email_key")
    assert not unique and ("was read" in unique.message or "unique constraint" in unique.message)
    used = ex.check(les, "track_pkey")
    assert not used and "it is used" in used.message
    other = ex.check(les, "employee_reports_to_idx")
    assert not other and "inserts nothing" in other.message
    assert "no index named" in ex.check(les, "no_such_idx").message.lower()
