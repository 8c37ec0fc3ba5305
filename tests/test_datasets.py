"""The shipped files, their manifest, and the loader (tiny scale, on the test server)."""
from __future__ import annotations

import gzip
import shutil

import pytest

from helpers.data import datasets, generate
from helpers.core.errors import WorkbookError


@pytest.fixture
def data_copy(tmp_path):
    """A private copy of datasets/ that a test may damage."""
    target = tmp_path / "datasets"
    shutil.copytree(datasets.DATA_DIR, target)
    return target


def test_shipped_files_match_the_manifest():
    rows = datasets.verify_manifest()
    assert rows == {"playlist_track": 8715, "track": 3503, "invoice_line": 2240, "invoice": 412, "album": 347,
                    "artist": 275, "customer": 59, "genre": 25, "playlist": 18, "employee": 8, "media_type": 5}
    assert sum(rows.values()) == 15_607
    assert (datasets.DATA_DIR / "LICENSE-chinook.txt").read_text().count("Luis Rocha") == 1


def test_a_corrupted_file_is_named_with_the_way_to_restore_it(data_copy):
    path = data_copy / "chinook" / "track.csv.gz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WorkbookError) as err:
        datasets.verify_manifest(data_copy)
    assert "track.csv.gz" in str(err.value)
    assert "git checkout -- datasets/" in str(err.value)


def test_an_edited_but_valid_file_is_caught_too(data_copy):
    path = data_copy / "chinook" / "genre.csv.gz"
    text = gzip.decompress(path.read_bytes()).replace(b"Rock", b"Rick")
    path.write_bytes(gzip.compress(text))
    with pytest.raises(WorkbookError, match=r"genre\.csv\.gz does not match its checksum"):
        datasets.verify_manifest(data_copy)


def test_a_missing_file_is_named(data_copy):
    (data_copy / "chinook" / "invoice_line.csv.gz").unlink()
    with pytest.raises(WorkbookError, match=r"invoice_line\.csv\.gz is missing.*git checkout -- datasets/"):
        datasets.verify_manifest(data_copy)


def test_schema_file_splits_into_tables_and_after_load_statements():
    create, after = datasets.schema_statements()
    assert len(create) == len(datasets.table_names()) == 14
    assert all(s.startswith("CREATE TABLE") for s in create)
    assert not any("PRIMARY KEY" in s or "REFERENCES" in s for s in create)  # keys come after the load
    assert sum("PRIMARY KEY" in s for s in after) == 14


def test_corrupted_data_loads_nothing(empty_db, data_copy):
    path = data_copy / "chinook" / "album.csv.gz"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(WorkbookError, match="album.csv.gz"):
        datasets.load_into(empty_db, "tiny", progress=False, data_dir=data_copy)
    assert datasets.table_counts(empty_db) == {}


def test_a_failure_mid_load_leaves_no_half_loaded_tables(empty_db, monkeypatch):
    def broken(table, scale, seed=generate.SEED):
        raise RuntimeError("generator broke")  # after all of Chinook's rows went in
        yield b""  # pragma: no cover - makes this a generator

    monkeypatch.setattr(generate, "iter_csv", broken)
    with pytest.raises(RuntimeError, match="generator broke"):
        datasets.load_into(empty_db, "tiny", progress=False)
    assert datasets.table_counts(empty_db) == {}


@pytest.mark.slow
def test_load_tiny_gives_a_consistent_world(empty_db):
    conn = empty_db
    counts = datasets.load_into(conn, "tiny", progress=False)
    real = datasets.verify_manifest()
    expected = dict(real)
    for table, n in generate.generated_counts("tiny").items():
        expected[table] = expected.get(table, 0) + n
    assert counts == expected
    assert counts["customer"] == 500 and counts["invoice"] == 10_000 and counts["plays"] == 100_000

    q = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
    # Every foreign key was validated when it was added after the load; check they are all there.
    assert q("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND connamespace = 'public'::regnamespace") \
        == 16
    assert q("SELECT count(*) FROM pg_constraint WHERE contype = 'p' AND connamespace = 'public'::regnamespace") \
        == 14
    # Invoices are consistent, including Chinook's own.
    assert q("""SELECT count(*) FROM invoice i
                JOIN (SELECT invoice_id, sum(unit_price * quantity) AS s FROM invoice_line GROUP BY invoice_id) l
                USING (invoice_id) WHERE i.total <> l.s""") == 0
    assert q("SELECT count(*) FROM invoice_line il JOIN track t USING (track_id) "
             "WHERE il.unit_price <> t.unit_price") == 0
    # The polymorphic comments point at rows that exist (no FK can say so: the lesson's point).
    assert q("""SELECT count(*) FROM comments c WHERE NOT EXISTS (
                  SELECT 1 FROM track WHERE c.commentable_type = 'track' AND track_id = c.commentable_id
                  UNION ALL SELECT 1 FROM album WHERE c.commentable_type = 'album' AND album_id = c.commentable_id
                  UNION ALL SELECT 1 FROM playlist
                            WHERE c.commentable_type = 'playlist' AND playlist_id = c.commentable_id)""") == 0
    # Time order on disk (BRIN) and statistics present (ANALYZE ran).
    assert q("SELECT correlation FROM pg_stats WHERE tablename = 'plays' AND attname = 'played_at'") > 0.99
    assert q("SELECT count(*) FROM pg_stat_user_tables WHERE last_analyze IS NULL AND last_autoanalyze IS NULL") \
        == 0
    assert q("SELECT count(*) FROM reviews WHERE attrs ? 'tags'") > 0
    # What the server stored is exactly what the generator wrote, whether sent as CSV or in binary (plays).
    assert "plays" in generate.BINARY_TABLES
    conn.execute("SET timezone = 'UTC'")
    for table, key in (("plays", "play_id"), ("invoice_line", "invoice_line_id")):
        out = bytearray()
        with conn.cursor().copy(f"COPY (SELECT * FROM {table} WHERE {key} > %s ORDER BY {key}) TO STDOUT "
                                "(FORMAT csv)", (real.get(table, 0),)) as copy:
            for block in copy:
                out += block
        assert bytes(out) == b"".join(generate.iter_csv(table, "tiny")), table
    # New rows get the next id.
    new_id = q("INSERT INTO artist (name) VALUES ('New Artist') RETURNING artist_id")
    assert new_id == real["artist"] + 1


@pytest.mark.slow
def test_loading_twice_into_the_same_database_is_refused(empty_db):
    datasets.load_into(empty_db, "tiny", progress=False)
    with pytest.raises(WorkbookError, match="already has tables"):
        datasets.load_into(empty_db, "tiny", progress=False)


def test_unknown_scale_is_refused_before_touching_the_database(empty_db):
    with pytest.raises(WorkbookError, match="Unknown scale"):
        datasets.load_into(empty_db, "huge", progress=False)
    assert datasets.table_counts(empty_db) == {}


@pytest.mark.slow
def test_templates_are_idempotent_and_a_scale_switch_rebuilds(tiny_template):
    from helpers import db

    def oid(admin, name):
        return admin.execute("SELECT oid FROM pg_database WHERE datname = %s", (name,)).fetchone()[0]

    with db.connect() as admin:
        before = oid(admin, tiny_template)
        assert db.ensure_template("tiny", progress=False) == tiny_template
        assert oid(admin, tiny_template) == before  # loading again changed nothing
        other = db.ensure_template("default", progress=False)  # the scale switch
        assert other != tiny_template
        rows = {}
        for name in (tiny_template, other):
            with db.connect(name) as conn:
                rows[name] = datasets.table_counts(conn)
        assert rows[tiny_template]["plays"] == generate.SCALES["tiny"].plays
        assert rows[other]["plays"] == generate.SCALES["default"].plays
        assert rows[other]["customer"] == generate.SCALES["default"].customers


def test_er_diagram_of_the_loaded_world(tiny_template):
    from matplotlib.figure import Figure

    from helpers import db
    from helpers.data import erd

    with db.connect(tiny_template) as conn:
        summary = erd.er_summary(conn)
        tables, fks = erd.er_model(conn)
        fig = erd.draw_er(conn)
    assert summary.splitlines()[0] == "14 tables, 16 foreign keys"
    assert "  playlist_track (2 columns): playlist_id PK FK, track_id PK FK" in summary
    assert "  employee(reports_to) -> employee(employee_id)" in summary
    assert isinstance(fig, Figure)
    pos = erd.layout(tables, fks)
    assert pos == erd.layout(tables, fks)  # deterministic
    for f in fks:  # every table sits right of the tables it references
        if f.table != f.ref_table:
            assert pos[f.table][0] > pos[f.ref_table][0], f
    # an edge that skips columns has a waypoint in each column it crosses
    plays_customer = next(f for f in fks if f.table == "plays" and f.ref_table == "customer")
    crossed = range(pos["customer"][0] + 1, pos["plays"][0])
    assert all((plays_customer.name, "plays", c) in pos for c in crossed)
