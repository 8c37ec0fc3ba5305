"""Notebook 06 (partitioning): the helpers of helpers/lessons/partitioning.py and the lesson's exercises."""
from __future__ import annotations

from datetime import date

import pytest

import helpers.lessons.solutions.partitioning  # noqa: F401  (registers the reference solutions)
from helpers.lessons import partitioning as L
from helpers.lessons import solutions
from helpers.exercises import NO_ANSWER, CheckResult, get
from helpers.plans import Plan

EXERCISE_IDS = ["06.prunable_report", "06.new_month"]


# ------------------------------------------------------------------ pure functions

def test_month_starts_cross_the_year():
    assert L.month_starts(date(2024, 11, 1), 3) == [date(2024, 11, 1), date(2024, 12, 1), date(2025, 1, 1),
                                                     date(2025, 2, 1)]
    with pytest.raises(ValueError):
        L.month_starts(date(2024, 11, 2), 1)


def _plan(append: dict) -> Plan:
    return Plan.from_json([{"Plan": {"Node Type": "Aggregate", "Plans": [append]}}])


def test_prune_report_counts_scans_and_removed_subplans():
    plan = _plan({"Node Type": "Append", "Subplans Removed": 22, "Plans": [
        {"Node Type": "Seq Scan", "Relation Name": "t_2025_03"},
        {"Node Type": "Seq Scan", "Relation Name": "other"}]})
    rep = L.prune_report(plan, [f"t_2025_{m:02d}" for m in range(1, 13)] + [f"public.t_2024_{m:02d}"
                                                                           for m in range(1, 13)])
    assert (rep.partitions, rep.in_plan, rep.removed_at_run, rep.pruned_at_plan, rep.scanned) == (24, 1, 22, 1, 1)
    assert rep.text() == "24 partitions: pruned at plan time 1, removed at run time 22, scanned 1"


def test_prune_report_never_executed_only_counts_when_analyzed():
    nodes = [{"Node Type": "Seq Scan", "Relation Name": f"p{i}", "Actual Loops": 0 if i else 1,
              "Actual Total Time": 0.0} for i in range(4)]
    analyzed = Plan.from_json([{"Plan": {"Node Type": "Append", "Plans": nodes}, "Execution Time": 1.0}])
    rep = L.prune_report(analyzed, ["p0", "p1", "p2", "p3"])
    assert (rep.in_plan, rep.never_executed, rep.scanned) == (4, 3, 1)


VERBOSE_15 = ('finished vacuuming "db.public.plays": index scans: 1\npages: 0 removed, 9426 remain, 9426 scanned '
              '(100.00% of total)\ntuples: 125159 removed, 874841 remain, 0 are dead but not yet removable\n'
              'WAL usage: 9000 records, 12 full page images, 1234567 bytes\n')
VERBOSE_18 = ('finished vacuuming "db.public.plays": index scans: 1\npages: 3 removed, 9488 remain, 9488 scanned '
              '(100.00% of total), 0 eagerly scanned\ntuples: 125159 removed, 874841 remain, 0 are dead but not yet '
              'removable\nWAL usage: 9000 records, 12 full page images, 1234567 bytes, 0 buffers full\n')


@pytest.mark.parametrize("text", [VERBOSE_15, VERBOSE_18], ids=["pg15", "pg18"])
def test_parse_vacuum_verbose(text):
    got = L.parse_vacuum_verbose(text)
    assert got["removed_rows"] == 125159 and got["remaining_rows"] == 874841
    assert got["index_scans"] == 1 and got["wal_bytes"] == 1234567 and got["wal_fpi"] == 12
    assert got["pages_remaining"] in (9426, 9488)
    with pytest.raises(ValueError):
        L.parse_vacuum_verbose("nothing here")


# ------------------------------------------------------------------ against a real server (the tiny data set)

@pytest.fixture(scope="module")
def les(tiny_template):
    from helpers import db

    with db.temporary_lesson("t06_ex") as lesson:
        yield lesson


@pytest.fixture(scope="module")
def by_month(les):
    c = les.conn
    c.execute("CREATE TABLE t_month (LIKE plays) PARTITION BY RANGE (played_at)")
    stmts = L.create_month_partitions(c, "t_month", date(2024, 1, 1), 24)
    c.execute("INSERT INTO t_month SELECT * FROM plays")
    c.execute("ANALYZE t_month")
    return stmts


def test_month_partitions_hold_every_row(les, by_month):
    assert len(by_month) == 24
    assert by_month[0].startswith('CREATE TABLE "t_month_2024_01" PARTITION OF "t_month" FOR VALUES FROM')
    rows = L.partition_rows(les, "t_month")
    assert [n for n, _ in rows] == L.partitions_of(les, "t_month") and len(rows) == 24
    assert sum(n for _, n in rows) == les.scalar("SELECT count(*) FROM plays")
    assert all(n > 0 for _, n in rows)
    bounds = dict(L.partition_bounds(les, "t_month"))
    assert bounds["t_month_2025_03"] == "FOR VALUES FROM ('2025-03-01 00:00:00+00') TO ('2025-04-01 00:00:00+00')"
    assert L.partitions_size(les, "t_month") > 0


def test_pruning_at_plan_time_at_run_time_and_defeated(les, by_month):
    month = "SELECT count(*) FROM t_month WHERE played_at >= '2025-03-01 00:00+00' AND played_at < '2025-04-01 00:00+00'"
    rep = L.pruning(les, "t_month", month)
    assert (rep.partitions, rep.in_plan, rep.scanned) == (24, 1, 1)
    defeated = L.pruning(les, "t_month", "SELECT count(*) FROM t_month WHERE date_trunc('month', played_at) = "
                                         "'2025-03-01 00:00+00'")
    assert defeated.scanned == 24
    les.run("PREPARE t_month_q(timestamptz) AS SELECT count(*) FROM t_month "
            "WHERE played_at >= $1 AND played_at < $1 + interval '1 month'")
    les.run("SET plan_cache_mode = force_generic_plan")
    try:
        generic = L.pruning(les, "t_month", "EXECUTE t_month_q('2025-03-01 00:00+00')", analyze=True)
        assert (generic.in_plan, generic.removed_at_run, generic.pruned_at_plan, generic.scanned) == (1, 23, 0, 1)
    finally:
        les.run("RESET plan_cache_mode")
        les.run("DEALLOCATE t_month_q")


def test_measure_write_counts_own_wal(les, by_month):
    les.run("CREATE TABLE t_wal AS SELECT * FROM plays WHERE played_at < '2024-03-01 00:00+00'")
    cost = L.measure_write(les, "DELETE FROM t_wal WHERE played_at < '2024-02-01 00:00+00'")
    assert cost.rows > 1000 and cost.seconds > 0
    assert cost.wal_bytes >= cost.wal > 50 * cost.rows  # a heap delete record per row, at least
    if L.wal_inspect_ready(les):
        assert cost.own_wal_bytes is not None
    plain = L.measure_write(les, "DROP TABLE t_wal", walinspect=False)
    assert plain.own_wal_bytes is None and plain.wal == plain.wal_bytes


def test_measure_write_keeps_its_wal_through_checkpoints(les, monkeypatch):
    """A checkpoint (any session's DROP DATABASE forces one) may recycle the statement's WAL segments before
    pg_walinspect reads them: the temporary slot keeps them; without one the figure falls back, with no error."""
    if not L.wal_inspect_ready(les) or not les.scalar(
            "SELECT rolsuper AND current_setting('max_slot_wal_keep_size') = '-1' FROM pg_roles "
            "WHERE rolname = current_user"):
        pytest.skip("needs pg_walinspect, CHECKPOINT rights and no max_slot_wal_keep_size")
    les.run("CREATE TABLE t_ckpt (x int)")
    churn = ("INSERT INTO t_ckpt SELECT g FROM generate_series(1, 5000) g; "
             + "SELECT pg_switch_wal(); CHECKPOINT; " * 3)
    kept = L.measure_write(les, churn)
    assert kept.own_wal_bytes is not None and 0 < kept.own_wal_bytes < kept.wal_bytes
    # this session's slot is gone (another test run's notebook 06 may hold its own at this moment)
    assert les.scalar("SELECT count(*) FROM pg_replication_slots "
                      "WHERE slot_name = 'pdw_walcount_' || pg_backend_pid()") == 0
    monkeypatch.setattr(L, "_reserve_wal", lambda conn: None)
    lost = L.measure_write(les, churn)  # segments recycled, unless something else on the server keeps WAL: no error
    assert lost.wal_bytes > 3 * 2**24 // 2
    assert lost.wal == (lost.wal_bytes if lost.own_wal_bytes is None else lost.own_wal_bytes)
    les.run("DROP TABLE t_ckpt")


def test_vacuum_report_sees_the_deleted_rows(les):
    les.run("CREATE TABLE t_vac AS SELECT * FROM plays WHERE played_at < '2024-03-01 00:00+00'")
    deleted = les.run("DELETE FROM t_vac WHERE played_at < '2024-02-01 00:00+00'")
    rep = L.vacuum_report(les, "t_vac")
    assert rep.removed_rows == deleted and rep.remaining_rows > 0 and rep.seconds > 0


def test_capture_notices_resets_the_level(les):
    with L.capture_notices(les, "debug1") as notes:
        les.run("CREATE TABLE t_notice (k int PRIMARY KEY)")
    assert any("t_notice_pkey" in n for n in notes)
    assert les.scalar("SHOW client_min_messages") == "notice"


def test_planning_sweep_small(les):
    points = L.planning_sweep(les, (2, 8), prefix="t_sweep")
    assert [p.partitions for p in points] == [2, 8]
    assert all(p.pruning_on_s > 0 and p.pruning_off_s > 0 for p in points)
    assert les.scalar("SELECT count(*) FROM pg_class WHERE relname LIKE 't\\_sweep%'") == 0
    assert les.scalar("SHOW enable_partition_pruning") == "on"
    fig = L.plot_sweep(points)
    assert len(fig.axes) == 1
    assert fig._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------ exercises

@pytest.mark.parametrize("ex_id", EXERCISE_IDS)
def test_exercise_fails_at_start_and_passes_after_the_solution(les, ex_id):
    ex = get(ex_id)
    assert ex.lesson == "06_partitioning" and solutions.has_solution(ex_id)
    ex.setup(les)
    start = ex.check(les, ex.starting_answer)
    assert isinstance(start, CheckResult) and not start.ok and len(start.message) > 20
    answer = solutions.solve(ex_id, les.conn)
    done = ex.check(les, answer)
    assert done.ok, done.message
    ex.setup(les)  # back to the start
    assert not ex.check(les, ex.starting_answer).ok


@pytest.mark.parametrize("answer", [NO_ANSWER, None, 3, 2.5, True, ["SELECT 1"]])
def test_prunable_report_wrong_types_get_a_message(les, answer):
    ex = get("06.prunable_report")
    ex.setup(les)
    result = ex.check(les, answer)
    assert not result.ok and "string" in result.message


@pytest.mark.parametrize("answer, words", [
    ("SELECT count(*) FROM ex_plays WHERE date_trunc('month', played_at) = '2025-03-01 00:00+00'", "partitions"),
    ("SELECT count(*) FROM ex_plays WHERE played_at >= '2025-03-01' AND played_at <= '2025-04-01'", "partitions"),
    ("SELECT count(*) FROM ex_plays WHERE played_at >= '2025-03-02' AND played_at < '2025-04-01'", "half-open"),
    ("SELECT 1; SELECT 2", "single SQL query"),
    ("SELEC count(*) FROM ex_plays", "failed"),
    ("SELECT count(*), 1 FROM ex_plays", "one value"),
])
def test_prunable_report_says_what_is_wrong(les, answer, words):
    ex = get("06.prunable_report")
    ex.setup(les)
    result = ex.check(les, answer)
    assert not result.ok and words in result.message, result.message


def test_prunable_report_rejects_a_typed_number(les):
    ex = get("06.prunable_report")
    ex.setup(les)
    n = les.scalar("SELECT count(*) FROM ex_plays WHERE played_at >= '2025-03-01' AND played_at < '2025-04-01'")
    result = ex.check(les, f"SELECT {n}::bigint")
    assert not result.ok and "type the number" in result.message


def test_new_month_catches_lost_rows_and_missing_default(les):
    ex = get("06.new_month")
    ex.setup(les)
    les.run("DELETE FROM ex_log_default WHERE logged_at >= '2026-01-01 00:00+00' AND logged_at < '2026-02-01 00:00+00'")
    les.run("CREATE TABLE ex_log_2026_01 PARTITION OF ex_log FOR VALUES FROM ('2026-01-01 00:00+00') "
            "TO ('2026-02-01 00:00+00')")
    result = ex.check(les)
    assert not result.ok and "rows were deleted, not moved" in result.message and "copy" not in result.message
    ex.setup(les)  # copied, not moved: the rows are there twice
    les.run("CREATE TABLE jan_copy AS SELECT * FROM ex_log_default WHERE logged_at < '2026-02-01 00:00+00'")
    les.run("INSERT INTO ex_log_default SELECT * FROM jan_copy")
    result = ex.check(les)
    assert not result.ok and "some rows are there twice" in result.message
    les.run("DROP TABLE jan_copy")
    ex.setup(les)
    les.run("ALTER TABLE ex_log DETACH PARTITION ex_log_default")
    for a, b in (("2026-01-01", "2026-02-01"), ("2026-02-01", "2026-03-01")):
        les.run(f"CREATE TABLE ex_log_{a[:7].replace('-', '_')} PARTITION OF ex_log FOR VALUES FROM ('{a} 00:00+00') "
                f"TO ('{b} 00:00+00')")
    les.run("INSERT INTO ex_log SELECT * FROM ex_log_default")
    les.run("DROP TABLE ex_log_default")
    result = ex.check(les)
    assert not result.ok and "no default partition" in result.message
    ex.setup(les)
    les.run("DROP TABLE ex_log")
    result = ex.check(les)
    assert not result.ok and "setup" in result.message


def test_measure_alternating_keeps_the_best_round(les):
    best = L.measure_alternating(les, {"one": "SELECT 1", "two": "SELECT 2"}, rounds=2, warmup=0, repeat=3,
                                 explain=False)
    assert set(best) == {"one", "two"} and all(m.n == 3 for m in best.values())


# ---------------------------------------------------------------- the classic wrong answers (issue 22)

def test_prunable_report_refuses_the_partition_by_name(les):
    ex = get("06.prunable_report")
    ex.setup(les)
    march = [p for p in L.partitions_of(les, "ex_plays") if "2025_03" in p]
    assert len(march) == 1
    result = ex.check(les, f"SELECT count(*) FROM {march[0]}")
    assert not result.ok and f"reads the partition {march[0]} by name. That is not pruning" in result.message
    assert "pruned at plan time" not in result.message


def test_prunable_report_between_is_named_not_a_function(les):
    ex = get("06.prunable_report")
    ex.setup(les)
    result = ex.check(les, "SELECT count(*) FROM ex_plays "
                           "WHERE played_at BETWEEN '2025-03-01 00:00+00' AND '2025-04-01 00:00+00'")
    assert not result.ok and "BETWEEN includes its upper end" in result.message
    assert "function" not in result.message


def test_new_month_starts_unanswered_and_hints_only_after_a_try(les):
    ex = get("06.new_month")
    ex.setup(les)
    start = ex.check(les)
    assert not start.ok and not start.answered and "Hint:" not in start.message and "move them" not in start.message
    les.run("CREATE TABLE ex_log_2026_01 (LIKE ex_log)")  # a first step, not yet attached
    tried = ex.check(les)
    assert tried.answered and "still goes to the default partition" in tried.message
