"""Lesson 04 (N+1): the models, exact statement counts of each loading strategy, the guards, and the exercises."""
from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm import Session, joinedload, raiseload, selectinload

from helpers.lessons import n_plus_one
import helpers.lessons.solutions.n_plus_one  # noqa: F401  (registers the reference solutions)
from helpers.counter import count_statements
from helpers.exercises import NO_ANSWER, get
from helpers.lessons.n_plus_one import Album, Artist, Customer, StatementBudgetExceeded, at_most, catalog, time_orm
from helpers.lessons.solutions import solve


@pytest.fixture(scope="module")
def les(tiny_template):
    """A lesson database on the tiny scale (Chinook is complete at every scale), dropped afterwards."""
    from helpers import db

    with db.temporary_lesson("t04_ex") as lesson:
        yield lesson


def _albums_of_first(les, n: int) -> int:
    return les.scalar("SELECT count(*) FROM album WHERE artist_id IN "
                      "(SELECT artist_id FROM artist ORDER BY artist_id LIMIT %(n)s)", {"n": n})


def test_lazy_loop_issues_one_plus_n_plus_albums(les):
    stmt = select(Artist).order_by(Artist.artist_id).limit(30)
    run = time_orm(les.engine, lambda s: catalog(s, stmt), name="lazy", repeat=1)
    assert run.statements == 1 + 30 + _albums_of_first(les, 30)
    assert [n for _, n in run.log.by_shape()][:2] == [1, 30]
    assert run.min_round_trips == run.statements + 2


def test_fixes_give_the_same_answer_in_fewer_statements(les):
    stmt = select(Artist).order_by(Artist.artist_id).limit(30)
    lazy = time_orm(les.engine, lambda s: catalog(s, stmt), repeat=1)
    sel = time_orm(les.engine, lambda s: catalog(s, stmt.options(
        selectinload(Artist.albums).selectinload(Album.tracks))), repeat=1)
    joined = time_orm(les.engine, lambda s: catalog(s, stmt.options(
        joinedload(Artist.albums).joinedload(Album.tracks))), repeat=1)
    assert lazy.result == sel.result == joined.result
    assert (sel.statements, joined.statements) == (3, 1)
    assert sel.rows == lazy.rows  # the same rows, fetched in 3 statements instead of many
    assert joined.values > sel.values  # joined rows repeat the parents' columns


def test_time_orm_uses_a_fresh_session_each_run(les):
    stmt = select(Customer).order_by(Customer.customer_id).limit(5)
    run = time_orm(les.engine, lambda s: n_plus_one.invoice_totals(s, stmt), repeat=3, warmup=1)
    assert len(run.times_s) == 3 and run.statements == 6 and run.best <= run.median


def test_strict_mapping_is_a_faithful_subset_of_the_store_models():
    from helpers.data import models

    strict = n_plus_one.make_models()
    assert n_plus_one.Artist is models.Artist and n_plus_one.Customer is models.Customer
    for name in ("Artist", "Album", "Track", "Playlist", "Customer", "Invoice"):
        mine, store = getattr(strict, name).__table__, getattr(models, name).__table__
        assert mine.name == store.name
        for col in mine.columns:
            assert col.name in store.columns, f"{name}.{col.name} is not in helpers.data.models"
            assert type(col.type) is type(store.columns[col.name].type) or col.type.python_type is \
                store.columns[col.name].type.python_type, f"{name}.{col.name}: {col.type} vs {store.columns[col.name].type}"
    assert all(r.lazy == "raise" for r in strict.Artist.__mapper__.relationships)


def test_raise_models_refuse_lazy_loads(les):
    strict = n_plus_one.make_models(lazy="raise")
    stmt = select(strict.Artist).order_by(strict.Artist.artist_id).limit(5)
    with Session(les.engine) as session, pytest.raises(InvalidRequestError, match="lazy='raise'"):
        catalog(session, stmt)
    with Session(les.engine) as session, count_statements(les.engine) as log:
        catalog(session, stmt.options(selectinload(strict.Artist.albums).selectinload(strict.Album.tracks)))
    assert log.count == 3


def test_raiseload_option(les):
    stmt = select(Artist).order_by(Artist.artist_id).limit(5).options(selectinload(Artist.albums), raiseload("*"))
    with Session(les.engine) as session, pytest.raises(InvalidRequestError, match="Album.tracks"):
        catalog(session, stmt)


def test_statement_budget(les):
    stmt = select(Artist).order_by(Artist.artist_id).limit(5)
    with pytest.raises(StatementBudgetExceeded, match="the budget is 2"):
        with at_most(les.engine, 2), Session(les.engine) as session:
            catalog(session, stmt)
    with at_most(les.engine, 3), Session(les.engine) as session:
        catalog(session, stmt.options(selectinload(Artist.albums).selectinload(Album.tracks)))


def test_latency_runs_count_round_trips(les):
    stmt = select(Artist).order_by(Artist.artist_id).limit(3)
    runs = n_plus_one.latency_runs(les, (0,), {"sel": lambda s: catalog(s, stmt.options(
        selectinload(Artist.albums).selectinload(Album.tracks)))}, repeat=2)
    assert len(runs) == 1 and runs[0].round_trips == runs[0].run.min_round_trips == 5


# ------------------------------------------------------------------------------------------------ exercises

def test_at_most_two(les):
    ex = get("04.at_most_two")
    ex.setup(les)
    assert not ex.check(les, NO_ANSWER)
    wrong_type = ex.check(les, "SELECT * FROM customer")
    assert not wrong_type and "should be a SQLAlchemy statement" in wrong_type.message
    naive = select(Customer).order_by(Customer.customer_id).limit(n_plus_one.CUSTOMER_LIMIT)
    res = ex.check(les, naive)
    assert not res and f"{n_plus_one.CUSTOMER_LIMIT + 1} statements" in res.message
    fewer = select(Customer).options(selectinload(Customer.invoices)).order_by(Customer.customer_id).limit(10)
    assert not ex.check(les, fewer)  # fast, but the wrong customers
    assert ex.check(les, solve("04.at_most_two", les.conn))
    joined = naive.options(joinedload(Customer.invoices))
    assert ex.check(les, joined)  # one statement is fine too


def test_predict_count(les):
    ex = get("04.predict_count")
    ex.setup(les)
    assert not ex.check(les, NO_ANSWER)
    assert "whole number" in ex.check(les, "42").message
    answer = solve("04.predict_count", les.conn)
    assert answer == 1 + n_plus_one.PREDICT_ARTISTS + _albums_of_first(les, n_plus_one.PREDICT_ARTISTS)
    assert not ex.check(les, answer + 1)
    forgot_tracks = ex.check(les, n_plus_one.PREDICT_ARTISTS + 1)
    assert not forgot_tracks and "one more statement per album" in forgot_tracks.message
    forgot_first = ex.check(les, answer - 1)
    assert not forgot_first and "the first SELECT" in forgot_first.message
    forgot_albums = ex.check(les, answer - n_plus_one.PREDICT_ARTISTS)
    assert not forgot_albums and "each artist's albums" in forgot_albums.message
    assert ex.check(les, answer)
    # any integral number is accepted: numpy and pandas integers, 345.0, the 1x1 DataFrame db.sql returns
    import numpy as np
    import pandas as pd

    for form in (np.int64(answer), np.int32(answer), np.uint16(answer), float(answer), np.float64(answer),
                 pd.Series([answer], dtype="Int64").iloc[0], les.sql(f"SELECT {answer} AS n"),
                 les.sql(f"SELECT {answer} AS n")["n"]):
        assert ex.check(les, form).ok, (type(form), form)
    assert "not a float" in ex.check(les, answer + 0.5).message
    # and the prediction is what the loop really does
    stmt = select(Artist).order_by(Artist.artist_id).limit(n_plus_one.PREDICT_ARTISTS)
    with count_statements(les.engine) as log, Session(les.engine) as session:
        catalog(session, stmt)
    assert log.count == answer


def test_growth_chart_says_it_plots_the_fastest_run():
    from helpers.lessons.n_plus_one import plot_growth

    fig = plot_growth([1, 2], {"lazy": [0.001, 0.002]}, "t")
    assert fig.axes[0].get_ylabel().startswith("fastest run")


def test_sibling_collections_multiply_rows_exactly(les):
    from helpers.lessons.n_plus_one import Track, sibling_rows_expected, track_siblings

    ids = [a for (a,) in les.conn.execute("SELECT album_id FROM album ORDER BY album_id LIMIT 3").fetchall()]
    exp = sibling_rows_expected(les, ids)
    q = select(Track).where(Track.album_id.in_(ids)).order_by(Track.track_id)
    joined = time_orm(les.engine, lambda s: track_siblings(
        s, q.options(joinedload(Track.playlists), joinedload(Track.invoice_lines))), name="j", repeat=1)
    selin = time_orm(les.engine, lambda s: track_siblings(
        s, q.options(selectinload(Track.playlists), selectinload(Track.invoice_lines))), name="s", repeat=1)
    assert joined.result == selin.result
    assert (joined.statements, joined.rows) == (1, exp["joined"])
    assert (selin.statements, selin.rows) == (3, exp["selectin"])
    assert exp["selectin"] == exp["tracks"] + exp["playlist_pairs"] + exp["invoice_lines"]


def test_chain_of_joinedloads_does_not_multiply(les):
    stmt = select(Artist).order_by(Artist.artist_id).limit(30)
    run = time_orm(les.engine, lambda s: catalog(s, stmt.options(joinedload(Artist.albums).joinedload(Album.tracks))),
                   name="j", repeat=1)
    assert run.rows == les.scalar(
        "SELECT count(*) FROM artist a LEFT JOIN album al USING (artist_id) LEFT JOIN track t USING (album_id) "
        "WHERE a.artist_id IN (SELECT artist_id FROM artist ORDER BY artist_id LIMIT 30)")


def test_shape_label():
    from helpers.lessons.n_plus_one import shape_label

    assert shape_label("SELECT a, b FROM album WHERE $1::INTEGER = album.artist_id ORDER BY album.album_id") == \
        "SELECT ... FROM album WHERE $1::INTEGER = album.artist_id"
    assert shape_label("SELECT x FROM artist ORDER BY x LIMIT $1") == "SELECT ... FROM artist"
    assert len(shape_label("SELECT x FROM t WHERE " + "a = $1 AND " * 20 + "b = $2", width=40)) == 40


def test_pg_stat_statements_counts_the_n_plus_one(les):
    from helpers.lessons.n_plus_one import own_statements, reset_own_statements, stat_statements

    why_not = stat_statements(les)
    if why_not:
        assert why_not.endswith("skipped.") and why_not.count(".") >= 1
        pytest.skip(why_not)
    reset_own_statements(les)
    stmt = select(Artist).order_by(Artist.artist_id).limit(10)
    with Session(les.engine) as session:
        catalog(session, stmt)
    calls = sorted(r["calls"] for r in own_statements(les))
    assert calls == sorted([1, 10, _albums_of_first(les, 10)])


def test_own_statements_of_retries_when_the_server_evicts(les, monkeypatch):
    from helpers.lessons import n_plus_one as m

    if m.stat_statements(les):
        pytest.skip("no pg_stat_statements")
    stmt = select(Artist).order_by(Artist.artist_id).limit(10)

    def page():
        with Session(les.engine) as session:
            catalog(session, stmt)

    rows = m.own_statements_of(les, page)
    assert rows is not None and sorted(r["calls"] for r in rows) == sorted([1, 10, _albums_of_first(les, 10)])
    ticks = iter(range(100))     # every reading of dealloc moves: every try sees an eviction
    monkeypatch.setattr(m, "statements_evicted", lambda conn: next(ticks))
    assert m.own_statements_of(les, page, tries=2) is None


def test_latency_model_arithmetic():
    from types import SimpleNamespace

    from helpers.lessons.n_plus_one import LatencyRun, latency_model

    def run(delay, name, median, trips, trip_s):
        r = SimpleNamespace(name=name, median=median * 1.1, best=median)
        return LatencyRun(delay, r, trips, trip_s)  # type: ignore[arg-type]

    runs = [run(0, "lazy", 0.050, 125, 0.0002), run(5, "lazy", 0.700, 125, 0.0052)]
    (m,) = latency_model(runs)
    assert (m.name, m.delay_ms, m.round_trips) == ("lazy", 5, 125)
    assert m.predicted_s == pytest.approx(0.050 + 125 * 0.005)
    assert m.ratio == pytest.approx(0.700 / 0.675)


def test_latency_slope_cancels_the_base():
    from types import SimpleNamespace

    from helpers.lessons.n_plus_one import LatencyRun, latency_slope

    def run(delay, name, best, trips, trip_s):
        r = SimpleNamespace(name=name, median=best * 1.1, best=best)
        return LatencyRun(delay, r, trips, trip_s)  # type: ignore[arg-type]

    # a base of 0.3 s (say, a disturbed run) is in both runs and drops out of the slope
    runs = [run(1, "lazy", 0.300 + 125 * 0.0011, 125, 0.0013), run(5, "lazy", 0.300 + 125 * 0.0052, 125, 0.0054)]
    s = latency_slope(runs, "lazy", 1, 5)
    assert (s.name, s.lo_ms, s.hi_ms, s.round_trips) == ("lazy", 1, 5, 125)
    assert s.per_trip_s == pytest.approx(0.0041)
    assert s.trip_diff_s == pytest.approx(0.0041)
    assert s.ratio == pytest.approx(1.0)


def test_latency_runs_measure_the_trip_cost_in_a_proxy_process(les):
    from helpers.lessons.n_plus_one import latency_runs

    stmt = select(Artist).order_by(Artist.artist_id).limit(5)
    lat = latency_runs(les, (0, 2), {"lazy": lambda s: catalog(s, stmt)}, repeat=1, warmup=0)
    zero, two = lat
    assert zero.trip_s < two.trip_s and two.trip_s >= 0.002
    assert zero.round_trips == two.round_trips


def test_stat_statements_says_why_in_one_sentence():
    import psycopg

    from helpers.lessons.n_plus_one import stat_statements

    class Conn:
        def __init__(self, shipped, error=None):
            self.shipped, self.error = shipped, error

        def execute(self, sql, *args):
            if "pg_available_extensions" in sql:
                return type("R", (), {"fetchone": lambda _: (int(self.shipped),)})()
            if self.error and "FROM pg_stat_statements" in sql:
                raise self.error
            return type("R", (), {"fetchall": lambda _: []})()

    assert "does not ship" in stat_statements(Conn(False))
    not_loaded = stat_statements(Conn(True, psycopg.errors.ObjectNotInPrerequisiteState("not loaded")))
    assert "shared_preload_libraries" in not_loaded and not_loaded.count(". ") == 0
    assert stat_statements(Conn(True)) is None
