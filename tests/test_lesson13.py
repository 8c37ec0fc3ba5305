"""Lesson 13: the checklist helpers and the exercises (fail at start, pass after the solution, refuse wrong fixes)."""
from __future__ import annotations

import pytest

from helpers import db as hdb
from helpers.audit import CHECKS, audit
from helpers.lessons import solutions
import helpers.lessons.solutions.checklist  # noqa: F401  (registers the reference solutions)
from helpers.exercises import get
from helpers.lessons.checklist import checklist, progress

EXERCISES = ["13.clean_schema", "13.orphans"]


@pytest.fixture(scope="module")
def les(tiny_template):
    with hdb.temporary_lesson("t13_lesson") as lesson:
        yield lesson


def test_checklist_lists_every_check():
    df = checklist()
    assert df["check"].tolist() == list(CHECKS) and len(df) >= 18
    assert set(df["severity"]) <= {"error", "warning", "info"}


def test_progress_line(les, capsys):
    les.run("DROP SCHEMA IF EXISTS p13 CASCADE; CREATE SCHEMA p13; CREATE TABLE p13.t (a int, price real)")
    left = progress(audit(les, schemas="p13"))
    out = capsys.readouterr().out
    assert left == {"missing_domain_check": 1, "money_in_float": 1, "no_primary_key": 1}
    assert out.startswith("2 error(s), 1 warning(s); still failing: missing_domain_check (1), money_in_float (1), "
                          "no_primary_key (1)")
    les.run("DROP SCHEMA p13 CASCADE")


@pytest.mark.parametrize("exercise_id", EXERCISES)
def test_exercise_fails_at_start_and_passes_after_the_solution(les, exercise_id):
    ex = get(exercise_id)
    assert ex.lesson == "13_design_checklist" and solutions.has_solution(exercise_id)
    ex.setup(les)
    start = ex.check(les, ex.starting_answer)
    assert not start.ok and str(start).startswith("Not yet. ") and len(start.message) > 20
    solutions.solve(exercise_id, les.conn)
    done = ex.check(les)
    assert done.ok, done.message
    ex.setup(les)
    assert not ex.check(les).ok


def test_clean_schema_accepts_cents_and_refuses_shortcuts(les):
    ex = get("13.clean_schema")
    ex.setup(les)
    start = ex.check(les)
    assert not start.ok and not start.answered and "money_in_float" not in start.message  # no hint before a try
    les.run("CREATE INDEX ex_try_idx ON ex_store.orders (order_id)")  # a change, not the fix
    assert "money_in_float" in ex.check(les).message or "no_primary_key" in ex.check(les).message
    les.run("DROP INDEX ex_store.ex_try_idx")
    les.run("DELETE FROM ex_store.orders WHERE order_id > 100")
    assert "without deleting data" in ex.check(les).message
    ex.setup(les)
    les.run("ALTER TABLE ex_store.products DROP COLUMN price")
    assert "price is gone" in ex.check(les).message
    ex.setup(les)
    les.run("ALTER TABLE ex_store.products ALTER COLUMN price TYPE text")
    assert "must stay a number" in ex.check(les).message
    ex.setup(les)
    les.run("BEGIN")
    try:
        les.run("ALTER TABLE ex_store.orders ADD PRIMARY KEY (order_id)")
        assert "transaction open" in ex.check(les).message  # a transaction left open: one sentence, no traceback
    finally:
        les.run("ROLLBACK")
    les.run("DROP TABLE ex_store.orders")
    assert "run the setup cell" in ex.check(les).message
    # another correct form: money as integer cents, a composite index starting with product_id, CHECK NOT VALID
    ex.setup(les)
    les.run("""ALTER TABLE ex_store.orders ADD PRIMARY KEY (order_id);
               ALTER TABLE ex_store.products ALTER COLUMN price TYPE bigint USING round(price * 100);
               ALTER TABLE ex_store.products RENAME COLUMN price TO price_cents""")
    assert "price is gone" in ex.check(les).message  # the column must keep its name
    ex.setup(les)
    les.run("""ALTER TABLE ex_store.orders ADD PRIMARY KEY (order_id);
               ALTER TABLE ex_store.products ALTER COLUMN price TYPE bigint USING round(price * 100);
               ALTER TABLE ex_store.products ADD CONSTRAINT pos CHECK (price > 0) NOT VALID;
               ALTER TABLE ex_store.orders ADD CHECK (quantity BETWEEN 1 AND 100);
               ALTER TABLE ex_store.orders ALTER COLUMN ordered_at TYPE timestamptz;
               CREATE INDEX ON ex_store.orders (product_id, ordered_at)""")
    assert ex.check(les).ok, ex.check(les).message


def test_orphans_refuses_the_classic_mistakes(les):
    ex = get("13.orphans")
    ex.setup(les)
    start = ex.check(les)
    assert not start.answered and "no foreign key" not in start.message  # no hint before a try
    les.run("CREATE INDEX ex_try_idx ON ex_log.plays (track_id)")  # a change, not the fix
    first = ex.check(les).message
    assert "no foreign key" in first and "12 row(s) point at no" in first
    les.run("ALTER TABLE ex_log.plays ADD CONSTRAINT fk FOREIGN KEY (track_id) REFERENCES ex_log.tracks NOT VALID")
    assert "NOT VALID" in ex.check(les).message
    ex.setup(les)
    les.run("TRUNCATE ex_log.plays")
    assert "Only 0 plays of existing tracks" in ex.check(les).message
    ex.setup(les)
    les.run("ALTER TABLE ex_log.plays DROP COLUMN track_id")
    assert "track_id is gone" in ex.check(les).message
    ex.setup(les)
    les.run("INSERT INTO ex_log.tracks SELECT g, 'restored ' || g FROM generate_series(51, 54) g")
    les.run("ALTER TABLE ex_log.plays ADD FOREIGN KEY (track_id) REFERENCES ex_log.tracks")
    assert ex.check(les).ok  # restoring the missing tracks is another correct repair
    ex.setup(les)
    les.run("DELETE FROM ex_log.tracks WHERE id > 45")
    assert "the tracks are fine" in ex.check(les).message


def test_data_import_cli_and_open_lesson(tmp_path, capsys, tiny_template):
    from helpers.__main__ import main
    from helpers.importer import open_lesson

    (tmp_path / "artists.csv").write_text("artist_id,name,zip\n1,Nina,01234\n2,Miles,99999\n")
    (tmp_path / "albums.csv").write_text("album_id,artist_id,price\n10,1,9.99\n11,3,7.50\n")
    name = "t13_import"
    try:
        assert main(["data", "import", str(tmp_path), "--lesson", name, "--type", "artists.zip=text"]) == 0
        out = capsys.readouterr().out
        assert "albums: 2 rows; album_id integer, artist_id integer, price numeric" in out
        assert "artists: 2 rows; artist_id integer, name text, zip text" in out
        mine = open_lesson(name)
        try:
            assert mine.scalar("SELECT zip FROM artists WHERE artist_id = 1") == "01234"
            report = audit(mine)
            found = {(f.check, f.object) for f in report.findings}
            assert ("no_primary_key", "albums") in found and ("missing_domain_check", "albums.price") in found
        finally:
            mine.close()
        assert main(["audit", name, "--fail-on", "error"]) == 1
        assert main(["data", "import", str(tmp_path / "x.parquet"), "--lesson", name]) == 2
        assert "x.parquet does not exist" in capsys.readouterr().err
        assert main(["data", "import", str(tmp_path / "artists.csv"), "--lesson", name]) == 2
        err = capsys.readouterr().err
        assert "table 'artists' is already here" in err and "--type" not in err, err
        # A failed import into a database it had to create leaves no empty database behind.
        (tmp_path / "bad").mkdir()
        (tmp_path / "bad" / "flags.csv").write_text("flag\n1\n2\n")
        assert main(["data", "import", str(tmp_path / "bad"), "--lesson", name + "_bad", "--type", "flag=boolean"]) == 2
        assert "--type column=text" in capsys.readouterr().err
        with hdb.connect() as admin:
            assert not hdb.exists(admin, hdb.db_name(admin.info.user, name + "_bad"))
    finally:
        with hdb.connect() as admin:
            hdb.drop_own(admin, hdb.db_name(admin.info.user, name))


def test_data_import_parquet_keeps_the_file_types(tmp_path, capsys, tiny_template):
    pa = pytest.importorskip("pyarrow")
    import datetime as dt

    import pyarrow.parquet as pq

    from helpers.__main__ import main
    from helpers.importer import open_lesson

    pq.write_table(pa.table({
        "play_id": pa.array([1, 2, 3], pa.int64()), "ms": pa.array([1.5, 2.0, None], pa.float64()),
        "device": ["car", "web", "car"], "live": [True, False, True],
        "at": pa.array([dt.datetime(2025, 1, 1, 12, tzinfo=dt.timezone.utc)] * 3, pa.timestamp("us", tz="UTC")),
        "zip": ["01234", "99999", "00001"],
    }), tmp_path / "plays_export.parquet")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet at all")
    name = "t13_parquet"
    try:
        assert main(["data", "import", str(tmp_path / "plays_export.parquet"), "--lesson", name]) == 0
        out = capsys.readouterr().out
        assert ("plays_export: 3 rows; play_id bigint, ms double precision, device text, live boolean, "
                "at timestamptz, zip text") in out
        mine = open_lesson(name)
        try:
            assert mine.scalar("SELECT zip FROM plays_export WHERE play_id = 3") == "00001"  # leading zeros kept
            assert mine.scalar("SELECT count(*) FROM plays_export WHERE ms IS NULL") == 1
        finally:
            mine.close()
        assert main(["data", "import", str(tmp_path / "broken.parquet"), "--lesson", name]) == 2
        err = capsys.readouterr().err
        assert "broken.parquet could not be read as Parquet" in err and "Traceback" not in err
    finally:
        with hdb.connect() as admin:
            hdb.drop_own(admin, hdb.db_name(admin.info.user, name))


def test_data_import_parquet_without_pyarrow_says_how_to_get_it(tmp_path, monkeypatch):
    import sys

    from helpers.core.errors import WorkbookError
    from helpers.importer import import_parquet

    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # as if pyarrow were not installed
    with pytest.raises(WorkbookError, match=r"needs pyarrow: install it with .*\[parquet\]"):
        import_parquet(None, tmp_path / "x.parquet")
