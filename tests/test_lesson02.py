"""Lesson 02: functional-dependency checks, sizes, and the exercises (fail at start, pass after the solution)."""
from __future__ import annotations

import pytest

from helpers import db as hdb
from helpers.lessons import solutions
import helpers.lessons.solutions.normalization  # noqa: F401  (registers the reference solutions)
from helpers.exercises import NO_ANSWER, get
from helpers.lessons.normalization import fd_report, fd_violations, pretty_bytes, sizes

EXERCISES = ["02.determinant", "02.decompose", "02.concurrent_refresh"]


@pytest.fixture(scope="module")
def les(tiny_template):
    """A fresh lesson database on the tiny data set, dropped afterwards."""
    with hdb.temporary_lesson("t02_lesson") as lesson:
        yield lesson


@pytest.fixture
def people(les):
    les.run("DROP TABLE IF EXISTS t_people")
    les.run('CREATE TABLE t_people (id int, "Zip Code" text, city text, country text)')
    les.run("""INSERT INTO t_people VALUES
        (1, '1000', 'Lisbon', 'PT'), (2, '1000', 'Lisbon', 'PT'), (3, '2000', 'Porto', 'PT'),
        (4, '3000', NULL, 'PT'), (5, '3000', 'Faro', 'PT'), (6, '4000', 'Lisbon', 'BR')""")
    yield "t_people"
    les.run("DROP TABLE t_people")


def test_fd_violations_counts_refuting_values(les, people):
    assert fd_violations(les, people, ["id"], ["city", "country"]) == 0
    assert fd_violations(les, people, "Zip Code", "city") == 1  # '3000' has NULL and Faro: NULL is a value
    assert fd_violations(les, people, ["city"], ["country"]) == 1  # Lisbon is in PT and BR
    assert fd_violations(les, people, "country", "city") == 1  # PT has four cities, BR one
    assert fd_violations(les, people, "city, country", "Zip Code") == 0
    with pytest.raises(ValueError, match="at least one"):
        fd_violations(les, people, [], ["city"])


def test_fd_report(les, people):
    df = fd_report(les, people, [("id", "city", "key"), ("city", "country", "guess")])
    assert list(df.columns) == ["dependency", "kind", "violations", "holds in the data"]
    assert df["dependency"].tolist() == ["id → city", "city → country"]
    assert df["holds in the data"].tolist() == [True, False]


def test_sizes_counts_rows_and_whole_pages(les, people):
    df = sizes(les, {"people": [people], "catalogue": ["artist", "album"]})
    assert df.loc["people", "rows"] == 6
    assert df.loc["catalogue", "rows"] == les.scalar("SELECT (SELECT count(*) FROM artist) + "
                                                     "(SELECT count(*) FROM album)")
    assert df.loc["people", "index bytes"] == 0 and df.loc["catalogue", "index bytes"] > 0
    assert df.loc["people", "indexes"] == 0 and df.loc["catalogue", "indexes"] == 3  # two keys, album.artist_id
    assert (df["table bytes"] % 8192 == 0).all() and (df["index bytes"] % 8192 == 0).all()
    assert pretty_bytes(60948480) == "58.1 MB" and pretty_bytes(8192) == "8 kB" and pretty_bytes(5 << 20) == "5,120 kB"


@pytest.mark.parametrize("exercise_id", EXERCISES)
def test_exercise_fails_at_start_and_passes_after_the_solution(les, exercise_id):
    ex = get(exercise_id)
    assert ex.lesson == "02_normalization" and solutions.has_solution(exercise_id)
    ex.setup(les)
    start = ex.check(les, ex.starting_answer)
    assert not start.ok and str(start).startswith("Not yet. ") and len(start.message) > 20
    answer = solutions.solve(exercise_id, les.conn)
    done = ex.check(les, answer)
    assert done.ok, done.message
    assert str(done).startswith("Right. ")
    ex.setup(les)  # setup is re-runnable and brings back the starting state
    assert not ex.check(les, ex.starting_answer).ok


@pytest.mark.parametrize("exercise_id", EXERCISES)
def test_exercise_without_setup_says_so(les, exercise_id):
    les.run("DROP TABLE IF EXISTS ex_shipment_line, ex_warehouse, ex_product, ex_shipments CASCADE")
    les.run("DROP MATERIALIZED VIEW IF EXISTS ex_genre_sales")
    result = get(exercise_id).check(les, "warehouse_code")
    assert not result.ok and "setup" in result.message


def test_determinant_answers(les):
    ex = get("02.determinant")
    ex.setup(les)
    assert "not a str" not in ex.check(les, "qty").message
    assert "qty → warehouse_city does not hold" in ex.check(les, "qty").message
    assert "shipment_id → warehouse_city does not hold" in ex.check(les, "shipment_id").message
    assert "determines itself" in ex.check(les, "warehouse_city").message
    assert "not a column" in ex.check(les, "warehouse").message
    assert ex.check(les, 3).message.startswith("The answer should be a column name as a string")
    assert ex.check(les, NO_ANSWER).message.startswith("There is no answer yet")
    assert ex.check(les, "  Warehouse_Code ").ok
    # only warehouse_code determines the city in the generated data
    others = [c for c in ("shipment_id", "line_no", "product_sku", "product_name", "qty")
              if fd_violations(les, "ex_shipments", [c], ["warehouse_city"]) == 0]
    assert others == []


def test_decompose_hints(les):
    ex = get("02.decompose")
    ex.setup(les)
    assert not ex.check(les).answered and "CREATE TABLE" not in ex.check(les).message  # no hint before a try
    les.run("CREATE TABLE ex_warehouse AS SELECT DISTINCT warehouse_code, warehouse_city FROM ex_shipments")
    assert "Create ex_product, ex_shipment_line" in ex.check(les).message
    les.run("CREATE TABLE ex_product AS SELECT DISTINCT product_sku, product_name FROM ex_shipments "
            "WHERE product_sku <> 'TAPE-7'")
    les.run("CREATE TABLE ex_shipment_line AS SELECT * FROM ex_shipments")
    assert "still stores product_name, warehouse_city" in ex.check(les).message
    les.run("ALTER TABLE ex_shipment_line DROP COLUMN warehouse_city, DROP COLUMN product_name")
    assert "ex_warehouse needs PRIMARY KEY" in ex.check(les).message
    les.run("ALTER TABLE ex_warehouse ADD PRIMARY KEY (warehouse_code)")
    les.run("ALTER TABLE ex_product ADD PRIMARY KEY (product_sku)")
    les.run("ALTER TABLE ex_shipment_line ADD PRIMARY KEY (shipment_id, line_no)")
    assert "foreign keys" in ex.check(les).message
    # a foreign key cannot be added while a product is missing, so check the lossy join without it
    les.run("ALTER TABLE ex_shipment_line ADD FOREIGN KEY (warehouse_code) REFERENCES ex_warehouse")
    les.run("ALTER TABLE ex_shipment_line ADD CONSTRAINT p FOREIGN KEY (product_sku) REFERENCES ex_product NOT VALID")
    message = ex.check(les).message
    assert "row(s) fewer" in message and "lossless" in message


def test_concurrent_refresh_needs_a_plain_unique_index(les):
    ex = get("02.concurrent_refresh")
    ex.setup(les)
    start = ex.check(les)
    assert not start.answered and "UNIQUE" not in start.message  # not answered yet: no hint
    les.run("CREATE INDEX ON ex_genre_sales (genre)")
    plain = ex.check(les)
    assert not plain.ok and "is not UNIQUE" in plain.message
    ex.setup(les)
    les.run("CREATE UNIQUE INDEX ON ex_genre_sales (genre) WHERE lines > 0")
    partial = ex.check(les)
    assert "needs a UNIQUE index" in partial.message and "has a WHERE clause" in partial.message
    les.run("CREATE INDEX ON ex_genre_sales (genre)")
    assert not ex.check(les).ok
    les.run("CREATE UNIQUE INDEX ON ex_genre_sales (genre)")
    assert ex.check(les).ok


def test_result_difference_counts_rows_both_ways_as_multisets(les):
    from helpers.lessons.normalization import result_difference

    one_two = "SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS v(n, s)"
    two_one = "SELECT * FROM (VALUES (2, 'b'), (1, 'a')) AS v(x, y) ORDER BY 1;"
    assert result_difference(les, one_two, two_one) == (0, 0)  # order and names do not matter
    doubled = "SELECT * FROM (VALUES (1, 'a'), (1, 'a'), (3, 'c')) AS v(n, s)"
    assert result_difference(les, one_two, doubled) == (1, 2)  # (2,b) missing; a second (1,a) and (3,c) extra
