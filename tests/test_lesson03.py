"""Lesson 03 (indexing): its helpers and its exercises, on a fresh tiny lesson database."""
from __future__ import annotations

import pytest

from helpers.lessons import indexing as l3
import helpers.lessons.solutions.indexing  # noqa: F401  (registers the reference solutions)
from helpers.exercises import NO_ANSWER, get
from helpers.plans import explain
from helpers.lessons.solutions import solve

EXERCISE_IDS = ["03.index_only_scan", "03.redundant_index", "03.column_order"]


@pytest.fixture(scope="module")
def les(tiny_template):
    """A lesson database copied from the tiny template, dropped afterwards."""
    from helpers import db

    with db.temporary_lesson("t03_ex") as lesson:
        yield lesson


@pytest.fixture
def conn(les):
    c = les.conn
    c.execute("DROP SCHEMA IF EXISTS t03 CASCADE")
    c.execute("CREATE SCHEMA t03")
    c.execute("SET search_path = t03, public")
    yield c
    c.execute("SET search_path = public")
    c.execute("DROP SCHEMA t03 CASCADE")


# ------------------------------------------------------------------------------------------ exercises

@pytest.mark.parametrize("ex_id", EXERCISE_IDS)
def test_check_fails_at_start_and_passes_after_the_solution(les, ex_id):
    ex = get(ex_id)
    assert ex.lesson == "03_indexing"
    ex.setup(les)
    start = ex.check(les, ex.starting_answer)
    assert not start.ok and str(start).startswith("Not yet. ") and len(start.message) > 30
    answer = solve(ex_id, les.conn)
    done = ex.check(les, answer)
    assert done.ok, done.message
    ex.setup(les)  # the setup brings back the starting state
    assert not ex.check(les, ex.starting_answer).ok


@pytest.mark.parametrize("ex_id", EXERCISE_IDS)
@pytest.mark.parametrize("answer", [NO_ANSWER, None, 3, 2.5, True, ["x"], {"a": 1}, "nonsense"])
def test_wrong_answers_get_a_message_not_a_crash(les, ex_id, answer):
    ex = get(ex_id)
    ex.setup(les)
    result = ex.check(les, answer)
    assert not result.ok and result.message


def test_redundant_index_answer_of_the_wrong_type_is_named(les):
    ex = get("03.redundant_index")
    ex.setup(les)
    assert "not an int" in ex.check(les, 3).message
    assert "There is no answer yet" in ex.check(les, NO_ANSWER).message


def test_redundant_index_hints(les):
    ex = get("03.redundant_index")
    ex.setup(les)
    assert "UNIQUE" in ex.check(les, "ex03_customer_email_key").message
    assert "second column" in ex.check(les, "ex03_customer_first_name_idx").message
    assert "has no index named" in ex.check(les, "no_such_idx").message
    assert ex.check(les, "public.EX03_CUSTOMER_EMAIL_IDX").ok  # schema and case do not matter


def test_index_only_scan_needs_vacuum(les):
    ex = get("03.index_only_scan")
    ex.setup(les)
    les.run("CREATE INDEX ex03_cover ON ex03_plays (customer_id) INCLUDE (played_at, ms_played)")
    half = ex.check(les)
    assert not half.ok and "VACUUM ex03_plays" in half.message
    les.run("VACUUM ex03_plays")
    assert ex.check(les).ok
    ex.setup(les)
    les.run("CREATE INDEX ex03_plain ON ex03_plays (customer_id)")
    assert "INCLUDE" in ex.check(les).message


def test_column_order_wrong_order_is_explained(les):
    ex = get("03.column_order")
    ex.setup(les)
    les.run("CREATE INDEX ex03_wrong ON ex03_log (played_at, device)")
    result = ex.check(les)
    assert not result.ok and "range column first" in result.message
    les.run("DROP INDEX ex03_wrong")
    les.run("CREATE INDEX ex03_one ON ex03_log (device)")
    assert not ex.check(les).ok


def test_checks_without_setup_explain(les):
    les.run("DROP TABLE IF EXISTS ex03_customer, ex03_log, ex03_plays")
    assert "setup" in get("03.redundant_index").check(les, "x").message
    assert "setup" in get("03.column_order").check(les).message
    assert "setup" in get("03.index_only_scan").check(les).message


# ------------------------------------------------------------------------------------------ audits

def _table(conn):
    conn.execute("CREATE TABLE t03.t (id int PRIMARY KEY, a int, b int, c text, d text UNIQUE)")
    conn.execute("INSERT INTO t03.t SELECT g, g % 10, g % 7, 'x' || g, 'd' || g FROM generate_series(1, 2000) g")


def test_redundant_indexes_rules(conn):
    _table(conn)
    conn.execute("CREATE INDEX t_d_plain ON t03.t (d)")             # same column as the UNIQUE: redundant
    conn.execute("CREATE INDEX t_ab ON t03.t (a, b)")
    conn.execute("CREATE INDEX t_a ON t03.t (a)")                   # prefix of (a, b): redundant
    conn.execute("CREATE INDEX t_a_desc ON t03.t (a DESC)")         # one column, either direction: redundant
    conn.execute("CREATE INDEX t_b ON t03.t (b)")                   # second column only: not redundant
    conn.execute("CREATE INDEX t_ab_mixed ON t03.t (a, b DESC)")    # another order for ORDER BY: not redundant
    conn.execute("CREATE INDEX t_c_part ON t03.t (c) WHERE a = 1")  # partial, nothing else on c
    conn.execute("CREATE INDEX t_c_hash ON t03.t USING hash (c)")   # another kind of index
    conn.execute("CREATE INDEX t_lower ON t03.t (lower(c))")
    conn.execute("CREATE INDEX t_lower2 ON t03.t (lower(c))")       # identical twin: the newer is reported
    found = {r.index: r for r in l3.redundant_indexes(conn, "t")}
    assert set(found) == {"t_d_plain", "t_a", "t_a_desc", "t_lower2"}, found
    assert found["t_d_plain"].covered_by == "t_d_key" and "unique" in found["t_d_plain"].reason
    assert found["t_a"].covered_by in ("t_ab", "t_ab_mixed") and "leading columns" in found["t_a"].reason
    assert found["t_lower2"].covered_by == "t_lower"
    assert "t_d_plain on t" in str(found["t_d_plain"])


def test_unique_indexes_are_never_redundant_to_plain_ones(conn):
    _table(conn)
    conn.execute("CREATE INDEX t_d_c ON t03.t (d, c)")
    conn.execute("CREATE INDEX t_id_a ON t03.t (id, a)")
    assert l3.redundant_indexes(conn, "t") == []


def test_include_columns_count(conn):
    _table(conn)
    conn.execute("CREATE INDEX t_a_inc ON t03.t (a) INCLUDE (c)")
    conn.execute("CREATE INDEX t_a_plain ON t03.t (a)")
    found = {r.index: r.covered_by for r in l3.redundant_indexes(conn, "t")}
    assert found == {"t_a_plain": "t_a_inc"}  # the covering one does more, so the plain one goes


def test_unused_indexes(conn):
    _table(conn)
    conn.execute("CREATE INDEX t_a_idx ON t03.t (a)")
    conn.execute("CREATE INDEX t_b_idx ON t03.t (b)")
    conn.execute("ANALYZE t03.t")
    for _ in range(3):
        conn.execute("SELECT count(*) FROM t03.t WHERE a = 3 AND b IS NOT NULL").fetchall()
    assert explain(conn, "SELECT count(*) FROM t03.t WHERE a = 3 AND b IS NOT NULL").index_names() == ["t_a_idx"]
    unused = [u.index for u in l3.unused_indexes(conn, tables=["t"])]
    assert unused == ["t_b_idx"]  # primary key and UNIQUE are never listed


# ------------------------------------------------------------------------------------------ measurements

def test_insert_throughput_shape(les):
    cost = l3.insert_throughput(les, (0, 1, 6), rows=2_000, repeat=3, prefix="t03_wc")
    assert cost.index_counts == [0, 1, 6] and all(len(v) == 3 for v in cost.times_s.values())
    assert cost.slowdown(0) == 1.0 and cost.rate(0) > 0
    assert cost.median(6) > cost.median(0)  # six indexes to maintain: never cheaper than none
    assert "6 indexes" in cost.text() and "rows/s" in cost.text()
    assert les.scalar("SELECT count(*) FROM pg_class WHERE relname LIKE 't03_wc%'") == 0  # cleaned up
    with pytest.raises(ValueError):
        l3.insert_throughput(les, (0, 7))


def test_stable_summary_and_helpers(les):
    from helpers.widgets import BeforeAfter

    w = BeforeAfter(les, "SELECT * FROM plays WHERE ms_played = 1234567", warmup=1, repeat=2,
                    change="CREATE INDEX t03_plays_ms_idx ON plays (ms_played)")
    r = w.run()
    text = l3.stable_summary(r, "plays")
    assert "reads every page of plays" in text.splitlines()[0]
    assert "Index" in text.splitlines()[1] and "pages" in text.splitlines()[1]
    assert "pages" not in l3.stable_summary(r, "plays", show_pages=False).splitlines()[1]
    assert l3.fastest_ratio(r) > 0
    assert l3.index_columns(les, "t03_plays_ms_idx") == ["ms_played"]
    w.revert()
    assert l3.relation_size(les, "plays") == l3.table_pages(les, "plays") * 8192


def test_heap_fetches_and_with_settings(conn):
    conn.execute("CREATE TABLE t03.v WITH (autovacuum_enabled = off) AS "
                 "SELECT g AS id, g % 50 AS k FROM generate_series(1, 5000) g")
    conn.execute("CREATE INDEX v_k ON t03.v (k)")
    conn.execute("ANALYZE t03.v")
    before = conn.execute("SHOW enable_bitmapscan").fetchone()[0]
    with l3.with_settings(conn, enable_bitmapscan="off", enable_seqscan="off"):
        assert conn.execute("SHOW enable_bitmapscan").fetchone()[0] == "off"
        plan = explain(conn, "SELECT k FROM t03.v WHERE k = 7", analyze=True)
    assert conn.execute("SHOW enable_bitmapscan").fetchone()[0] == before
    assert "Index Only Scan" in plan.node_types() and l3.heap_fetches(plan) == 100
    conn.execute("VACUUM t03.v")
    with l3.with_settings(conn, enable_bitmapscan="off", enable_seqscan="off"):
        assert l3.heap_fetches(explain(conn, "SELECT k FROM t03.v WHERE k = 7", analyze=True)) == 0


def test_small_helpers(les, capsys):
    assert l3.loglog_slope([10, 100, 1000], [0.001, 0.01, 0.1]) == pytest.approx(1.0)
    assert l3.loglog_slope([10, 100, 1000], [0.002, 0.002, 0.002]) == pytest.approx(0.0)
    with pytest.raises(ValueError):
        l3.loglog_slope([10], [1.0])
    assert l3.pretty_bytes(24_576) == "24 kB" and l3.pretty_bytes(22_462_464) == "21.4 MB"
    assert l3.pretty_bytes(1_105_920) == "1.05 MB"
    with pytest.raises(ValueError):
        l3.show_explain(les, "SELECT 1")
    l3.show_explain(les, "EXPLAIN SELECT * FROM plays WHERE play_id = 1")
    assert "plays_pkey" in capsys.readouterr().out
    assert l3.skip_scan_expected(les) == (les.conn.info.server_version >= 180000)
    plan = explain(les, "SELECT * FROM plays ORDER BY play_id DESC LIMIT 1")
    assert l3.scan_direction(plan) == "Backward"
    assert l3.scan_line(plan) == "Index Scan using plays_pkey on plays"
    assert [name for name, _, _ in l3.index_sizes(les, "plays")] == ["plays_pkey"]


def test_scale_summary_hides_what_differs_between_servers(les):
    from helpers.widgets import ScaleExplorer

    result = ScaleExplorer(les, sizes=(1_000, 20_000), warmup=1, repeat=2, schema="t03_scale").run()
    text = l3.scale_summary(result)
    lines = text.splitlines()
    assert len(lines) == 2 and lines[0].strip().startswith("1,000 rows")
    assert all("Seq Scan on t_" in line and "(whole table)" in line for line in lines)
    assert all(line.endswith(" pages") for line in lines)
    assert str(result.before[0].pages) not in text.split(";")[0].split("rows")[1]  # heap pages are not printed


# ---------------------------------------------------------------- issue 22: no hint before a try, classic wrong answers

@pytest.mark.parametrize("ex_id", ["03.index_only_scan", "03.column_order"])
def test_database_exercises_give_no_hint_before_a_try(les, ex_id):
    ex = get(ex_id)
    ex.setup(les)
    start = ex.check(les)
    assert not start.ok and not start.answered and "Hint" not in start.message and "INCLUDE" not in start.message


def test_classic_wrong_answers_are_named(les):
    ex = get("03.index_only_scan")
    ex.setup(les)
    les.run("CREATE INDEX ex03_two ON ex03_plays (customer_id, played_at)")  # ms_played missing
    les.run("VACUUM ex03_plays")
    partial = ex.check(les)
    assert not partial.ok and "still visits the table" in partial.message
    redundant = get("03.redundant_index")
    redundant.setup(les)
    assert "expression" in redundant.check(les, "ex03_customer_lower_email_idx").message
    assert "partial index" in redundant.check(les, "ex03_customer_company_idx").message
    assert "primary key" in redundant.check(les, "ex03_customer_pkey").message
    order = get("03.column_order")
    order.setup(les)
    les.run("CREATE INDEX ex03_range ON ex03_log (played_at)")
    only_range = order.check(les)
    assert not only_range.ok and only_range.answered


def test_hash_bucket_model_follows_postgres_split_points():
    from helpers.lessons.indexing import hash_bucket_model

    assert hash_bucket_model(20_000, 20_000) == {"fill_target": 307, "initial": 128, "in_use": 128, "allocated": 128}
    assert hash_bucket_model(20_000, 20_000, fillfactor=100)["initial"] == 64  # 409 entries per bucket
    # 5,000 rows: 16 buckets at build, one split during the build (5,000 > 16 x 307), the next split point allocated
    assert hash_bucket_model(5_000, 5_000) == {"fill_target": 307, "initial": 16, "in_use": 17, "allocated": 32}
    assert hash_bucket_model(10, 10)["initial"] == 2
    # doubling up to 512 buckets, then quarter steps: 1,100 wanted -> 1,280, 2,049 -> 2,560
    assert [hash_bucket_model(b * 307, 0)["initial"] for b in (300, 600, 1100, 2049)] == [512, 640, 1280, 2560]


def test_hash_layout_matches_the_model_on_the_server(conn):
    from helpers.lessons.indexing import hash_bucket_model, hash_layout

    conn.execute("CREATE TABLE t03.h AS SELECT g % 997 AS k FROM generate_series(1, 30000) AS g")
    conn.execute("ANALYZE t03.h")
    estimated = conn.execute("SELECT reltuples FROM pg_class WHERE oid = 't03.h'::regclass").fetchone()[0]
    conn.execute("CREATE INDEX t03_h_hash ON t03.h USING hash (k)")
    model, layout = hash_bucket_model(estimated, 30000), hash_layout(conn, "t03.t03_h_hash")
    assert layout["bucket"] == model["in_use"] and layout["bucket"] + layout["unused"] == model["allocated"]
    assert layout["pages"] == 1 + model["allocated"] + layout["overflow"] + layout["bitmap"]
    assert layout["live_items"] == 30000


def test_build_row_estimate_scales_the_analyzed_density_to_the_current_pages(conn):
    """A hash build sizes itself from reltuples / relpages x current pages, not from a stale reltuples."""
    from helpers.lessons.indexing import build_row_estimate, hash_bucket_model, hash_layout

    conn.execute("CREATE TABLE t03.g (k int)")   # filled by INSERT both times: the same rows per page
    conn.execute("INSERT INTO t03.g SELECT g % 997 FROM generate_series(1, 30000) AS g")
    with pytest.raises(ValueError, match="ANALYZE"):
        build_row_estimate(conn, "t03.g")                 # never analyzed: no estimate to scale
    conn.execute("ANALYZE t03.g")
    conn.execute("INSERT INTO t03.g SELECT g % 997 FROM generate_series(1, 30000) AS g")  # doubles, not analyzed
    estimated = build_row_estimate(conn, "t03.g")
    assert 58_000 < estimated < 62_000
    conn.execute("CREATE INDEX t03_g_hash ON t03.g USING hash (k)")
    model, layout = hash_bucket_model(estimated, 60000), hash_layout(conn, "t03.t03_g_hash")
    assert model["initial"] == 256 and hash_bucket_model(30000, 60000)["initial"] == 128  # stale reltuples: wrong
    assert layout["bucket"] == model["in_use"] and layout["bucket"] + layout["unused"] == model["allocated"]
