"""The measurement core (helpers.timing): repeat counts, spreads, server figures, ratios, output format."""
from __future__ import annotations

import configparser
import math
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from helpers.timing import Comparison, Measurement, ServerFigures, as_connection, compare, measure

CFG = Path(__file__).with_name("nbval_sanitize.cfg")


def sanitize(text: str) -> str:
    """Apply the nbval sanitizer's rules, as nbval does before comparing stored outputs."""
    cp = configparser.ConfigParser(interpolation=None)
    cp.read(CFG, encoding="utf-8")
    for section in cp.sections():
        text = re.sub(cp[section]["regex"], cp[section]["replace"], text)
    return text


def fake(times_ms: list[float], pages: int = 100, rows: int = 1) -> Measurement:
    server = ServerFigures(execution_s=times_ms[0] / 1000, planning_s=0.0001, shared_hit=pages, shared_read=0, rows=rows)
    return Measurement("SELECT 1", None, tuple(t / 1000 for t in times_ms), 2, rows, server)


@pytest.fixture
def table(module_db):
    module_db.execute("DROP TABLE IF EXISTS m")
    module_db.execute(
        "CREATE TABLE m AS SELECT g AS id, g % 50 AS grp, md5(g::text) AS label FROM generate_series(1, 100000) AS g")
    module_db.execute("VACUUM ANALYZE m")
    return module_db


def test_statistics_of_a_measurement():
    m = fake([5, 1, 3, 2, 4, 7, 6])
    assert m.n == 7
    assert m.median == pytest.approx(0.004)
    assert (m.min, m.max) == (pytest.approx(0.001), pytest.approx(0.007))
    assert m.q1 == pytest.approx(0.0025) and m.q3 == pytest.approx(0.0055)
    short = fake([3, 1, 2])  # fewer than 4 repeats: the spread is min–max
    assert (short.q1, short.q3) == (pytest.approx(0.001), pytest.approx(0.003))
    assert "min–max" in short.time_text() and "IQR" in m.time_text()


def test_comparison_ratio_and_range():
    before = fake([40, 42, 44, 41, 43, 45, 39], pages=4425)
    after = fake([1.0, 1.1, 0.9, 1.0, 1.05, 0.95, 1.0], pages=4)
    c = compare(before, after)
    assert isinstance(c, Comparison)
    assert c.ratio == pytest.approx(0.042 / 0.001)
    assert c.low == pytest.approx(before.q1 / after.q3)
    assert c.high == pytest.approx(before.q3 / after.q1)
    assert c.low < c.ratio < c.high
    assert c.verdict == "faster" and compare(after, before).verdict == "slower"
    assert compare(before, before).verdict == "unclear"
    assert c.pages_text() == "pages 4,425 → 4"
    assert compare(before, fake([0, 0, 0])).ratio == math.inf


def test_summaries_are_identical_after_the_sanitizer():
    """Only clock numbers change between runs, and the sanitizer masks every one of them."""
    a = compare(fake([40, 42, 44, 41, 43, 45, 39], pages=4425), fake([1.0, 1.1, 0.9, 1.0, 1.05, 0.95, 1.0], pages=4))
    b = compare(fake([130, 180, 150, 120, 160, 170, 140], pages=4425), fake([0.08, 0.07, 0.09, 0.08, 0.1, 0.2, 0.3], pages=4))
    assert a.summary() != b.summary()
    assert sanitize(a.summary()) == sanitize(b.summary())
    assert "rows 1" in sanitize(a.summary())  # deterministic numbers stay (pages are masked: they differ by version)
    assert sanitize(a.before.summary()) == sanitize(b.before.summary())


def test_measure_repeats_and_server_figures(table):
    m = measure(table, "SELECT * FROM m WHERE grp = %s", (7,), warmup=1, repeat=5)
    assert m.n == 5 and m.warmup == 1
    assert m.rows_returned == 2000 and m.server.rows == 2000
    assert m.min <= m.q1 <= m.median <= m.q3 <= m.max
    relpages = table.execute("SELECT relpages FROM pg_class WHERE relname = 'm'").fetchone()[0]
    assert m.pages == relpages  # a sequential scan touches every page once
    assert m.server.execution_s > 0 and m.server.planning_s > 0
    assert m.plan is not None and m.plan.analyzed


def test_measure_accepts_a_lesson_and_rejects_other_things(table):
    lesson_like = SimpleNamespace(conn=table)
    assert as_connection(lesson_like) is table
    assert measure(lesson_like, "SELECT 1", repeat=1, explain=False).rows_returned == 1
    with pytest.raises(TypeError, match="psycopg connection or a Lesson"):
        measure("postgresql://nope", "SELECT 1")


def test_timed_runs_are_not_auto_prepared_unless_asked(table):
    """psycopg prepares after 5 executions; measure() keeps every run unprepared by default."""
    from helpers import db

    with db.connect(table.info.dbname) as conn:  # a session of its own: prepared statements are per session
        _count_prepared(conn)


def _count_prepared(table):
    measure(table, "SELECT count(*) FROM m WHERE grp = %s", (3,), warmup=2, repeat=10, explain=False)
    assert table.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0] == 0
    measure(table, "SELECT count(*) FROM m WHERE grp = %s", (3,), warmup=2, repeat=3, explain=False, prepare=True)
    assert table.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0] == 1


def test_explain_does_not_change_data(table):
    m = measure(table, "SELECT count(*) FROM m", repeat=1)
    assert m.server.rows == 1
    from helpers.plans import explain

    explain(table, "DELETE FROM m WHERE grp = 1", analyze=True)
    assert table.execute("SELECT count(*) FROM m").fetchone()[0] == 100000


@pytest.mark.timing
def test_an_index_makes_a_lookup_much_faster(table):
    before = measure(table, "SELECT * FROM m WHERE id = %s", (4242,))
    table.execute("CREATE INDEX m_id_idx ON m (id)")
    after = measure(table, "SELECT * FROM m WHERE id = %s", (4242,))
    c = compare(before, after)
    assert before.pages > 500 and after.pages <= 5  # deterministic: the seq scan reads them all
    assert c.ratio > 3  # typically 20-100×; wide margin for a loaded 2-core machine
    assert c.server_ratio > 3


@pytest.mark.timing
def test_timer_agrees_with_pgbench(table):
    """The benchmark's comparison in small: same query, same server; a wide margin for a busy machine."""
    from helpers.bench.timer import run_pgbench

    query = "SELECT grp, count(*) FROM m GROUP BY grp"
    timer = measure(table, query, warmup=2, repeat=15, explain=False).median
    bench = run_pgbench(table, query, 15).average_s
    # Same query, two clients: they agree within 1.25x on a quiet machine (the benchmark's job to show); here only
    # a gross disagreement fails, because CI may share two cores with other work.
    assert 0.25 < timer / bench < 4.0
    one = run_pgbench(table, "SELECT 1", 20)
    assert 0 < one.average_s < 0.05


def test_taking_turns_rotates_the_first_variant_each_round():
    from helpers.timing import taking_turns

    assert list(taking_turns(["a", "b", "c"], 4)) == ["a", "b", "c", "b", "c", "a", "c", "a", "b", "a", "b", "c"]
    assert list(taking_turns({"x": 1, "y": 2}, 2)) == ["x", "y", "y", "x"]  # a dict's keys, in order


def test_measure_in_turns_warms_every_query_then_times_them_in_turns(table):
    """Each query warmed up, then one timed run of each per round (the first rotating), then each explained in a
    transaction that is rolled back: the trace table records the order the server ran them in."""
    from helpers.timing import measure_in_turns

    table.execute("DROP TABLE IF EXISTS trace")
    table.execute("CREATE TABLE trace (seq serial, q text)")
    queries = [f"WITH i AS (INSERT INTO trace (q) VALUES ('{q}') RETURNING 1) SELECT * FROM i" for q in "abc"]
    ms = measure_in_turns(table, queries, warmup=1, repeat=3)
    order = "".join(r[0] for r in table.execute("SELECT q FROM trace ORDER BY seq"))
    assert order == "abc" + "abc" + "bca" + "cab"  # the explains were rolled back
    assert [m.query for m in ms] == queries
    assert all(m.n == 3 and m.warmup == 1 and m.rows_returned == 1 and m.server.rows == 1 for m in ms)
    assert all(m.plan is not None and m.plan.analyzed for m in ms)
    assert measure_in_turns(table, queries[:1], warmup=0, repeat=2, explain=False)[0].plan is None
    with pytest.raises(ValueError, match="at least 1"):
        measure_in_turns(table, queries, repeat=0)
    table.execute("DROP TABLE trace")
