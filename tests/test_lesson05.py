"""Lesson 05 (query patterns): TOAST and fetch sizes, pagination agreement, batch variants, and the exercises."""
from __future__ import annotations

import statistics
from decimal import Decimal

import psycopg
import pytest

from helpers.lessons import query_patterns
import helpers.lessons.solutions.query_patterns  # noqa: F401  (registers the reference solutions)
from helpers.core.errors import WorkbookError
from helpers.exercises import NO_ANSWER, get
from helpers.lessons.solutions import solve


@pytest.fixture(scope="module")
def les(tiny_template):
    """A lesson database on the tiny scale (100k plays), dropped afterwards."""
    from helpers import db

    with db.temporary_lesson("t05_ex") as lesson:
        yield lesson


def test_track_docs_live_in_toast(les):
    query_patterns.make_track_docs(les, chunks=60)
    pages = query_patterns.relation_pages(les, "track_doc")
    assert pages["toast"] > 5 * pages["heap"] > 0
    wide = query_patterns.fetch_size(les, "SELECT * FROM track_doc")
    narrow = query_patterns.fetch_size(les, "SELECT track_id FROM track_doc")
    assert wide.rows == narrow.rows == les.scalar("SELECT count(*) FROM track")
    assert wide.columns == 6 and narrow.columns == 1
    assert wide.value_bytes > 50 * narrow.value_bytes
    assert query_patterns.relation_pages(les, "track")["toast"] == 0  # no large values there


def test_fetch_size_counts_text_bytes(les):
    size = query_patterns.fetch_size(les, "SELECT 'abc'::text, NULL::int, 12345 FROM generate_series(1, 4)")
    assert (size.rows, size.columns, size.value_bytes) == (4, 3, 4 * 8)


def test_offset_and_keyset_agree_and_keyset_stays_flat(les):
    les.run("CREATE INDEX IF NOT EXISTS plays_played_at_play_id_idx ON plays (played_at, play_id)")
    runs = query_patterns.pagination_runs(les, [1, 100, 2000], repeat=1)
    assert all(r.keyset.pages <= 10 for r in runs)
    assert runs[-1].offset.pages > 50 * runs[-1].keyset.pages


def test_cursor_at_start_gives_the_first_page(les):
    first = les.conn.execute(query_patterns.KEYSET_PAGE, {"size": 5, **query_patterns.cursor_at(les, 0)}).fetchall()
    assert first == les.conn.execute(query_patterns.OFFSET_PAGE, {"size": 5, "offset": 0}).fetchall()
    second = les.conn.execute(query_patterns.KEYSET_PAGE, {"size": 5, **query_patterns.cursor_at(les, 5)}).fetchall()
    assert second == les.conn.execute(query_patterns.OFFSET_PAGE, {"size": 5, "offset": 5}).fetchall()


def test_batch_variants_apply_the_same_changes_and_roll_back(les):
    before = les.scalar("SELECT sum(unit_price) FROM track")
    changes = query_patterns.make_changes(les, 50)
    assert len(changes) == 50 and all(isinstance(p, Decimal) for _, p in changes)
    for name, fn in query_patterns.batch_variants().items():
        run = query_patterns.time_batch(les, name, fn, changes, repeat=1)
        assert run.rows == 50 and run.rate > 0
    assert les.scalar("SELECT sum(unit_price) FROM track") == before  # every run was rolled back


def test_time_batches_interleaves_the_variants(les):
    changes = query_patterns.make_changes(les, 20)
    order = []

    def variant(name):
        def run(conn, ch):
            order.append(name)
            query_patterns.batch_variants()["one UPDATE"](conn, ch)
        return run

    runs = query_patterns.time_batches(les, {"a": variant("a"), "b": variant("b")}, changes, rounds=3)
    assert order == ["a", "b", "b", "a", "a", "b"]  # turns within each round, each round starting one further
    assert [r.name for r in runs] == ["a", "b"] and all(len(r.times_s) == 3 and r.rows == 20 for r in runs)
    assert all(len(r.cpu_s) == 3 and r.rate == 20 / statistics.median(r.times_s) for r in runs)


def test_time_batch_vacuums_so_rolled_back_runs_do_not_grow_the_table(les, monkeypatch):
    """Each rolled-back run leaves its 300 new row versions behind; the VACUUM before each run clears them."""
    changes = query_patterns.make_changes(les, 300)
    one_update = query_patterns.batch_variants()["one UPDATE"]

    def pages_after(runs: int) -> int:
        query_patterns.time_batch(les, "one UPDATE", one_update, changes, repeat=runs)
        return les.scalar("SELECT pg_relation_size('track') / current_setting('block_size')::int")

    les.run("ALTER TABLE track SET (autovacuum_enabled = off)")  # only our VACUUM, none in between
    try:
        first = pages_after(1)
        assert pages_after(4) <= first
        monkeypatch.setattr(query_patterns, "_vacuum_track", lambda conn: None)
        assert pages_after(4) > first  # without it the table grows with every run
    finally:
        les.run("ALTER TABLE track RESET (autovacuum_enabled)")


def test_time_batch_refuses_a_connection_inside_a_transaction(les):
    """VACUUM cannot run in a transaction block: the timing says so in one sentence instead of skipping it."""
    changes = query_patterns.make_changes(les, 5)
    with les.conn.transaction():
        with pytest.raises(WorkbookError, match="autocommit and outside a transaction"):
            query_patterns.time_batch(les, "one UPDATE", query_patterns.batch_variants()["one UPDATE"], changes)


def test_time_batch_catches_a_variant_that_does_less(les):
    changes = query_patterns.make_changes(les, 20)

    def lazy_variant(conn, ch):
        query_patterns.batch_variants()["one UPDATE"](conn, ch[:10])

    with pytest.raises(AssertionError, match="did not apply"):
        query_patterns.time_batch(les, "half", lazy_variant, changes, repeat=1)

    def swapped_variant(conn, ch):  # the same prices, so the same sum, on the wrong tracks
        swapped = [(tid, price) for (tid, _), (_, price) in zip(ch, ch[1:] + ch[:1])]
        query_patterns.batch_variants()["one UPDATE"](conn, swapped)

    with pytest.raises(AssertionError, match="did not apply"):
        query_patterns.time_batch(les, "swapped", swapped_variant, changes, repeat=1)


def test_network_batch_pays_one_round_trip_per_loop_statement(les):
    """The lesson's model, two-sided: the loop waits once per statement plus once for psycopg's prepare (31 for 30),
    each wait at least the delay; COPY + UPDATE 4 times; one UPDATE once; executemany's pipeline overlaps its waits."""
    changes = query_patterns.make_changes(les, 30)
    runs = {r.run.name: r for r in query_patterns.network_batch(les, changes, delay_ms=2)}
    loop = runs["loop of UPDATEs"]
    assert loop.writes == 31 and len(loop.run.times_s) == 3
    assert loop.writes * 0.002 <= loop.run.best <= loop.writes * 0.008
    assert runs["COPY + UPDATE"].writes == 4 and runs["one UPDATE"].writes == 1
    assert psycopg.Pipeline.is_supported(), "executemany pipelines only with psycopg 3.1+ and libpq 14+"
    assert runs["executemany"].run.best < loop.run.best / 3


# ------------------------------------------------------------------------------------------------ exercises

def test_keyset_next_page(les):
    ex = get("05.keyset_next_page")
    ex.setup(les)
    assert les.scalar("SELECT count(*) FROM pg_index WHERE indrelid = 'plays'::regclass AND NOT indisprimary") == 0
    assert not ex.check(les, NO_ANSWER)
    assert "should be one SQL query" in ex.check(les, 42).message
    assert not ex.check(les, "SELECT 1; SELECT 2")
    assert not ex.check(les, "SELECT play_id FROM plays LIMIT 20")  # wrong rows
    cursor = query_patterns.keyset_cursor_text(les)
    query = ("SELECT play_id, customer_id, track_id, played_at FROM plays "
             f"WHERE (played_at, play_id) > {cursor} ORDER BY played_at, play_id LIMIT 20")
    no_index = ex.check(les, query)  # right rows, but without the index it reads the whole table
    assert not no_index and "pages" in no_index.message
    offset = ex.check(les, "SELECT play_id, customer_id, track_id, played_at FROM plays ORDER BY played_at, play_id "
                           f"LIMIT 20 OFFSET {query_patterns.keyset_cursor_offset(les)}")
    assert not offset and "OFFSET" in offset.message
    # the cursor sits inside a tie, so the classic mistakes return other rows, each named (issue 22)
    at, pid = les.conn.execute("SELECT %s::timestamptz, %s::int" % tuple(cursor.strip("()").split(", "))).fetchone()
    assert les.scalar("SELECT count(*) FROM plays WHERE played_at = %(at)s AND play_id > %(pid)s",
                      {"at": at, "pid": pid}) >= 1
    cols = "SELECT play_id, customer_id, track_id, played_at FROM plays "
    at_sql = cursor.strip("()").split(", ")[0]
    separate = ex.check(les, cols + f"WHERE played_at > {at_sql} AND play_id > {pid} ORDER BY played_at, play_id LIMIT 20")
    assert not separate and "comparing the columns one by one" in separate.message
    no_tie = ex.check(les, cols + f"WHERE played_at > {at_sql} ORDER BY played_at, play_id LIMIT 20")
    assert not no_tie and "needs its tie-breaker, play_id" in no_tie.message
    again = ex.check(les, cols + f"WHERE (played_at, play_id) >= {cursor} ORDER BY played_at, play_id LIMIT 20")
    assert not again and "use > (strictly after the cursor), not >=" in again.message
    inclusive = ex.check(les, cols + f"WHERE played_at >= {at_sql} ORDER BY played_at, play_id LIMIT 20")
    assert not inclusive and "not >=" in inclusive.message
    assert ex.check(les, solve("05.keyset_next_page", les.conn))
    assert not ex.check(les, "DELETE FROM plays")  # read-only: refused, and nothing deleted
    assert les.scalar("SELECT count(*) FROM plays") > 0


def test_upsert_daily(les):
    ex = get("05.upsert_daily")
    ex.setup(les)
    assert not ex.check(les, NO_ANSWER)
    assert "should be one SQL statement" in ex.check(les, ["INSERT"]).message
    naive = ex.check(les, "INSERT INTO ex_track_stats SELECT track_id, plays FROM ex_daily")
    assert not naive and "duplicate key" in naive.message and "a plain INSERT stops" in naive.message
    nothing = ex.check(les, "INSERT INTO ex_track_stats SELECT track_id, plays FROM ex_daily "
                            "ON CONFLICT (track_id) DO NOTHING")
    assert not nothing
    assert "kept their old plays: DO NOTHING" in nothing.message
    replaced = ex.check(les, "INSERT INTO ex_track_stats SELECT track_id, plays FROM ex_daily "
                             "ON CONFLICT (track_id) DO UPDATE SET plays = EXCLUDED.plays")
    assert not replaced and "EXCLUDED.plays the day's value: add them" in replaced.message
    ambiguous = ex.check(les, "INSERT INTO ex_track_stats SELECT track_id, plays FROM ex_daily "
                              "ON CONFLICT (track_id) DO UPDATE SET plays = plays + EXCLUDED.plays")
    assert not ambiguous and "a bare plays could be either" in ambiguous.message
    assert "ON CONFLICT" not in ambiguous.message.split("could be either")[0]
    update_only = ex.check(les, "UPDATE ex_track_stats s SET plays = s.plays + d.plays FROM ex_daily d "
                                "WHERE d.track_id = s.track_id")
    assert not update_only and "new tracks were not inserted" in update_only.message
    assert "There is no answer yet" in ex.check(les, NO_ANSWER).message and "ON CONFLICT" not in \
        ex.check(les, NO_ANSWER).message
    answer = solve("05.upsert_daily", les.conn)
    assert ex.check(les, answer)
    assert ex.check(les, answer)  # the check rolls back, so it passes again
    assert les.scalar("SELECT count(*) FROM ex_track_stats") == 600
