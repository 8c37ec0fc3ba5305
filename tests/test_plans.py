"""Plans (helpers.plans): parsing, checks, the stable summary (same on PostgreSQL 15 and 18), pictures, diff."""
from __future__ import annotations

import pytest

from helpers.plans import (Plan, diff_plans, draw_plan, draw_plan_diff, explain, figure_png, has_seq_scan,
                           plan_summary, uses_index)


@pytest.fixture
def db(module_db):
    empty_db = module_db
    empty_db.execute("DROP TABLE IF EXISTS artist, album")
    empty_db.execute("CREATE TABLE artist AS SELECT g AS id, 'Artist ' || g AS name FROM generate_series(1, 2000) AS g")
    empty_db.execute(
        "CREATE TABLE album AS SELECT g AS id, 1 + g % 2000 AS artist_id, 'Album ' || g AS title "
        "FROM generate_series(1, 100000) AS g")
    empty_db.execute("ALTER TABLE artist ADD PRIMARY KEY (id)")
    empty_db.execute("VACUUM ANALYZE artist, album")
    return empty_db


def test_seq_scan_then_index(db):
    q = "SELECT title FROM album WHERE id = 4242"
    before = explain(db, q)
    assert not before.analyzed
    assert has_seq_scan(before, "album") and has_seq_scan(before, "public.album")
    assert not has_seq_scan(before, "artist")
    assert before.node_types() == ["Seq Scan"]
    assert plan_summary(before) == "Seq Scan on album"
    db.execute("CREATE UNIQUE INDEX album_id_idx ON album (id)")
    after = explain(db, q)
    assert uses_index(after, "album_id_idx") and not uses_index(after, "nope")
    assert not has_seq_scan(after, "album")
    assert plan_summary(after) == "Index Scan using album_id_idx on album"
    assert after.index_names() == ["album_id_idx"]


def test_summary_of_a_join_and_aggregate(db):
    db.execute("CREATE INDEX album_artist_id_idx ON album (artist_id)")
    q = ("SELECT ar.name, count(*) FROM artist ar JOIN album al ON al.artist_id = ar.id "
         "WHERE ar.id = %s GROUP BY ar.name")
    plan = explain(db, q, (17,))
    summary = plan_summary(plan)
    # shape fixed by the data: one artist by primary key, its albums by the artist_id index
    assert summary.splitlines()[0].startswith(("GroupAggregate", "Aggregate", "HashAggregate"))
    assert "Index Scan using artist_pkey on artist" in summary
    assert uses_index(plan, "album_artist_id_idx")
    assert "cost" not in summary and "ms" not in summary and "rows" not in summary


def test_analyze_gives_times_and_pages_and_changes_nothing(db):
    plan = explain(db, "DELETE FROM album WHERE id <= 500", analyze=True)
    assert plan.analyzed and plan.execution_ms > 0
    assert plan.root.pages > 0 and plan.root.total_ms is not None
    assert db.execute("SELECT count(*) FROM album").fetchone()[0] == 100000
    scan = plan.nodes()[-1]
    assert scan.node_type == "Seq Scan" and scan.own_pages == scan.pages  # a leaf owns all its pages


def test_diff_marks_what_changed(db):
    q = "SELECT * FROM album WHERE artist_id = 5"
    a = explain(db, q)
    assert not diff_plans(a, a).changed
    assert diff_plans(a, a).text() == "plan unchanged:\n  Seq Scan on album"
    db.execute("CREATE INDEX album_artist_id_idx ON album (artist_id)")
    b = explain(db, q)
    d = diff_plans(a, b)
    assert d.changed
    assert d.removed == ["Seq Scan on album"]
    assert any("using album_artist_id_idx" in line for line in d.added)
    assert d.text().splitlines()[0] == "- Seq Scan on album"


def test_from_json_and_parallel_time():
    """Hand-written EXPLAIN JSON: own time subtracts children; loops under a Gather are shared."""
    data = [{
        "Plan": {
            "Node Type": "Gather", "Workers Launched": 2, "Actual Total Time": 30.0, "Actual Loops": 1,
            "Shared Hit Blocks": 900, "Shared Read Blocks": 100,
            "Plans": [{"Node Type": "Seq Scan", "Parallel Aware": True, "Relation Name": "plays",
                       "Actual Total Time": 27.0, "Actual Loops": 3, "Shared Hit Blocks": 900,
                       "Shared Read Blocks": 100}],
        },
        "Planning Time": 0.1, "Execution Time": 30.5,
    }]
    plan = Plan.from_json(data)
    gather, scan = plan.nodes()
    assert plan_summary(plan) == "Gather\n  Parallel Seq Scan on plays"
    assert scan.total_ms == pytest.approx(27.0)  # 3 loops in 3 processes at once, not 81 ms
    assert gather.own_ms == pytest.approx(3.0)
    assert gather.pages == 1000 and gather.own_pages == 0
    assert has_seq_scan(plan, "plays") and plan.execution_ms == 30.5


def test_pictures_are_png_figures(db):
    a = explain(db, "SELECT count(*) FROM album WHERE artist_id = 5", analyze=True)
    db.execute("CREATE INDEX album_artist_id_idx ON album (artist_id)")
    b = explain(db, "SELECT count(*) FROM album WHERE artist_id = 5", analyze=True)
    fig = draw_plan(a, title="before")
    assert len(fig.axes) == 3
    png = figure_png(fig)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert figure_png(draw_plan_diff(a, b))[:4] == b"\x89PNG"
    assert figure_png(draw_plan(explain(db, "SELECT 1")))[:4] == b"\x89PNG"  # no ANALYZE: cost bars
    # shown as PNG when it is a cell's value, even if pyplot was never imported
    assert fig._repr_png_()[:4] == b"\x89PNG" and repr(fig).startswith("<Figure size 1000x")
