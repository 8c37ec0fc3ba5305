"""Lesson 02 (normalization): functional dependencies checked against data, table sizes, and the exercises.

* :func:`fd_violations` counts the values of a determinant that map to more than one value of the dependent
  columns: 0 means the dependency holds *in this data* (the data can refute a dependency, never prove it: that
  comes from what the columns mean).
* :func:`fd_report` checks several dependencies at once, as a DataFrame.
* :func:`result_difference` compares two queries' result sets (the same report asked of two designs).
* :func:`sizes` reports rows, table and index sizes of groups of tables (deterministic: the same on 15 and 18).
* Exercises ``02.determinant``, ``02.decompose`` and ``02.concurrent_refresh`` (solutions in
  :mod:`helpers.lessons.solutions.normalization`).
"""
from __future__ import annotations

from typing import Any, Sequence

import psycopg
from psycopg import sql as pgsql

from helpers.exercises import CheckResult, Exercise, register
from helpers.timing import as_connection

__all__ = ["fd_violations", "fd_report", "result_difference", "sizes", "pretty_bytes"]


def _cols(columns: str | Sequence[str]) -> list[str]:
    if isinstance(columns, str):
        return [c.strip() for c in columns.split(",") if c.strip()]
    return list(columns)


def fd_violations(conn: Any, table: str, determinant: str | Sequence[str], dependent: str | Sequence[str]) -> int:
    """How many values of ``determinant`` come with more than one value of ``dependent`` in ``table`` (lesson 02).

    Columns are given as a list or a comma-separated string; NULL counts as a value of its own.
    """
    conn = as_connection(conn)
    lhs, rhs = _cols(determinant), _cols(dependent)
    if not lhs or not rhs:
        raise ValueError("Name at least one determinant and one dependent column.")
    query = pgsql.SQL(
        "SELECT count(*) FROM (SELECT 1 FROM {table} GROUP BY {lhs} HAVING count(DISTINCT ({rhs}, true)) > 1) AS v"
    ).format(
        table=pgsql.Identifier(table),
        lhs=pgsql.SQL(", ").join(pgsql.Identifier(c) for c in lhs),
        rhs=pgsql.SQL(", ").join(pgsql.Identifier(c) for c in rhs),
    )
    return int(conn.execute(query).fetchone()[0])


def fd_report(conn: Any, table: str, dependencies: Sequence[tuple[str, str, str]]) -> Any:
    """A DataFrame: for each ``(determinant, dependent, kind)``, the dependency and its violations in ``table``."""
    import pandas as pd

    rows = []
    for lhs, rhs, kind in dependencies:
        n = fd_violations(conn, table, lhs, rhs)
        rows.append({"dependency": f"{', '.join(_cols(lhs))} → {', '.join(_cols(rhs))}", "kind": kind,
                     "violations": n, "holds in the data": n == 0})
    return pd.DataFrame(rows)


def result_difference(conn: Any, a: str, b: str) -> tuple[int, int]:
    """``(rows of a missing from b, rows of b missing from a)`` as multisets (``EXCEPT ALL``) (lesson 02).

    ``(0, 0)`` means the two queries return the same rows, duplicates included; column names and order of
    rows do not matter, the number and types of columns must match. ``a`` and ``b`` are trusted SQL
    (the notebook's own queries), without a trailing semicolon.
    """
    conn = as_connection(conn)
    a, b = a.strip().rstrip(";"), b.strip().rstrip(";")
    row = conn.execute(
        f"SELECT (SELECT count(*) FROM (({a}) EXCEPT ALL ({b})) AS d1), "
        f"(SELECT count(*) FROM (({b}) EXCEPT ALL ({a})) AS d2)"
    ).fetchone()
    return int(row[0]), int(row[1])


def pretty_bytes(n: int) -> str:
    """``57.0 MB``, ``412 kB``: sizes in the units pg_size_pretty uses, one decimal for MB."""
    if n >= 10 * 1024 * 1024:
        return f"{n / 1024 / 1024:.1f} MB"
    return f"{n // 1024:,} kB"


def sizes(conn: Any, groups: dict[str, Sequence[str]]) -> Any:
    """Rows, table (heap) bytes, index count and index bytes of each group of tables, as a DataFrame (lesson 02).

    Heap and index sizes are counted in pages (the main fork only, so they do not depend on whether the
    free-space map exists yet), which makes them the same on every PostgreSQL version for the same rows.
    """
    import pandas as pd

    conn = as_connection(conn)
    out = []
    for label, tables in groups.items():
        rows = heap = index = n_indexes = 0
        for table in tables:
            ident = pgsql.Identifier(table)
            rows += conn.execute(pgsql.SQL("SELECT count(*) FROM {}").format(ident)).fetchone()[0]
            heap += conn.execute("SELECT pg_relation_size(%s::regclass)", (table,)).fetchone()[0]
            index += conn.execute(
                "SELECT coalesce(sum(pg_relation_size(indexrelid)), 0) FROM pg_index WHERE indrelid = %s::regclass",
                (table,)).fetchone()[0]
            n_indexes += conn.execute("SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass",
                                      (table,)).fetchone()[0]
        out.append({"tables": label, "rows": int(rows), "table bytes": int(heap), "indexes": int(n_indexes),
                    "index bytes": int(index),
                    "total": pretty_bytes(int(heap + index))})
    return pd.DataFrame(out).set_index("tables")


# ---------------------------------------------------------------- the exercises' flat table

_SHIPMENTS = """
CREATE TABLE ex_shipments AS
SELECT s AS shipment_id, l AS line_no,
       w.code AS warehouse_code, w.city AS warehouse_city,
       p.sku AS product_sku, p.name AS product_name,
       1 + (s * 7 + l * 3) % 5 AS qty
FROM generate_series(1, 400) AS s
CROSS JOIN generate_series(1, 3) AS l
JOIN (VALUES (0, 'BER1', 'Berlin'), (1, 'LIS1', 'Lisbon'), (2, 'LIS2', 'Lisbon'), (3, 'OSL1', 'Oslo'))
     AS w(n, code, city) ON w.n = (s * 5 + l) % 4
JOIN (VALUES (0, 'VIN-001', 'Vinyl: Kind of Blue'), (1, 'VIN-002', 'Vinyl: Abbey Road'),
             (2, 'CD-010', 'CD: Back in Black'), (3, 'CD-011', 'CD: Rumours'), (4, 'TAPE-7', 'Tape: Mixtape'))
     AS p(n, sku, name) ON p.n = (s + l * 2) % 5
"""


def _setup_shipments(conn: psycopg.Connection) -> None:
    conn.execute("DROP TABLE IF EXISTS ex_shipment_line, ex_warehouse, ex_product, ex_shipments CASCADE")
    conn.execute(_SHIPMENTS)
    conn.execute("ALTER TABLE ex_shipments ADD PRIMARY KEY (shipment_id, line_no)")


def _exists(conn: psycopg.Connection, name: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]


# ---------------------------------------------------------------- exercise 02.determinant

_SHIPMENT_COLUMNS = ("shipment_id", "line_no", "warehouse_code", "warehouse_city", "product_sku", "product_name", "qty")


def _check_determinant(conn: psycopg.Connection, answer: Any) -> CheckResult:
    if not _exists(conn, "ex_shipments"):
        return CheckResult(False, "There is no table ex_shipments; run the exercise's setup cell first.")
    col = answer.strip().lower()
    if col not in _SHIPMENT_COLUMNS:
        return CheckResult(False, f"{answer!r} is not a column of ex_shipments; choose one of "
                                  f"{', '.join(_SHIPMENT_COLUMNS)}.")
    if col == "warehouse_city":
        return CheckResult(False, "Every column determines itself; which *other* column determines warehouse_city?")
    n = fd_violations(conn, "ex_shipments", [col], ["warehouse_city"])
    if n:
        return CheckResult(False, f"{col} → warehouse_city does not hold: {n} value(s) of {col} come with more "
                                  "than one city. Hint: fd_violations(db, 'ex_shipments', [...], ['warehouse_city']) "
                                  "tests a candidate; 0 means it holds in the data.")
    return CheckResult(True, "warehouse_code → warehouse_city: the city depends on a non-key column, a transitive "
                             "dependency, so ex_shipments is not in 3NF. The city belongs in a warehouse table.")


# ---------------------------------------------------------------- exercise 02.decompose

_REJOIN = """
SELECT l.shipment_id, l.line_no, l.warehouse_code, w.warehouse_city, l.product_sku, p.product_name, l.qty
FROM ex_shipment_line l
JOIN ex_warehouse w ON w.warehouse_code = l.warehouse_code
JOIN ex_product p ON p.product_sku = l.product_sku
"""


def _columns_of(conn: psycopg.Connection, table: str) -> list[str]:
    rows = conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
        "ORDER BY attnum", (table,)).fetchall()
    return [r[0] for r in rows]


def _pk_of(conn: psycopg.Connection, table: str) -> list[str]:
    rows = conn.execute(
        """SELECT a.attname FROM pg_constraint c
           CROSS JOIN unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
           JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
           WHERE c.conrelid = %s::regclass AND c.contype = 'p' ORDER BY k.ord""", (table,)).fetchall()
    return sorted(r[0] for r in rows)


def _fk_targets(conn: psycopg.Connection, table: str) -> set[str]:
    rows = conn.execute("SELECT confrelid::regclass::text FROM pg_constraint WHERE conrelid = %s::regclass "
                        "AND contype = 'f'", (table,)).fetchall()
    return {r[0] for r in rows}


def _check_decompose(conn: psycopg.Connection, answer: Any) -> CheckResult:
    if not _exists(conn, "ex_shipments"):
        return CheckResult(False, "There is no table ex_shipments; run the exercise's setup cell first.")
    missing = [t for t in ("ex_warehouse", "ex_product", "ex_shipment_line") if not _exists(conn, t)]
    if missing:
        return CheckResult(False, f"Create {', '.join(missing)} from ex_shipments. Hint: CREATE TABLE ex_warehouse AS "
                                  "SELECT DISTINCT warehouse_code, warehouse_city FROM ex_shipments; then add keys.")
    line_cols = set(_columns_of(conn, "ex_shipment_line"))
    leftovers = sorted(line_cols & {"warehouse_city", "product_name"})
    if leftovers:
        return CheckResult(False, f"ex_shipment_line still stores {', '.join(leftovers)}, which depend on another "
                                  "non-key column: keep only the codes there.")
    expected_keys = {"ex_warehouse": ["warehouse_code"], "ex_product": ["product_sku"],
                     "ex_shipment_line": ["line_no", "shipment_id"]}
    for table, key in expected_keys.items():
        if _pk_of(conn, table) != key:
            return CheckResult(False, f"{table} needs PRIMARY KEY ({', '.join(sorted(key))}): the key is what makes a "
                                      "fact stored once.")
    if not {"ex_warehouse", "ex_product"} <= _fk_targets(conn, "ex_shipment_line"):
        return CheckResult(False, "ex_shipment_line should have foreign keys to ex_warehouse and ex_product, so a "
                                  "line cannot name a warehouse or product that does not exist.")
    try:
        with conn.transaction(force_rollback=True):
            lost = conn.execute(f"SELECT count(*) FROM (SELECT * FROM ex_shipments EXCEPT {_REJOIN}) AS d").fetchone()[0]
            extra = conn.execute(f"SELECT count(*) FROM ({_REJOIN} EXCEPT SELECT * FROM ex_shipments) AS d"
                                 ).fetchone()[0]
    except psycopg.Error as exc:
        return CheckResult(False, f"Joining the three tables back failed ({exc.diag.message_primary}); keep the "
                                  "original column names.")
    if lost or extra:
        return CheckResult(False, f"Joined back, the three tables give {lost} row(s) fewer and {extra} row(s) more "
                                  "than ex_shipments: the decomposition must be lossless.")
    return CheckResult(True, "Three tables in 3NF, each fact stored once, and joining them gives back exactly "
                             "ex_shipments (a lossless decomposition).")


# ---------------------------------------------------------------- exercise 02.concurrent_refresh

def _setup_refresh(conn: psycopg.Connection) -> None:
    conn.execute("DROP MATERIALIZED VIEW IF EXISTS ex_genre_sales")
    conn.execute("""
        CREATE MATERIALIZED VIEW ex_genre_sales AS
        SELECT g.name AS genre, count(*) AS lines, sum(il.unit_price * il.quantity) AS revenue
        FROM invoice_line il JOIN track t USING (track_id) JOIN genre g USING (genre_id)
        GROUP BY g.name""")


def _check_refresh(conn: psycopg.Connection, answer: Any) -> CheckResult:
    kind = conn.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass('ex_genre_sales')").fetchone()
    if kind is None or kind[0] != "m":
        return CheckResult(False, "There is no materialized view ex_genre_sales; run the exercise's setup cell first.")
    try:
        with conn.transaction(force_rollback=True):
            conn.execute("REFRESH MATERIALIZED VIEW CONCURRENTLY ex_genre_sales")
    except psycopg.Error as exc:
        indexes = conn.execute("SELECT c.relname, i.indisunique, i.indpred IS NOT NULL, i.indexprs IS NOT NULL "
                               "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                               "WHERE i.indrelid = 'ex_genre_sales'::regclass ORDER BY 1").fetchall()
        why = ""
        if indexes and not any(unique for _, unique, _, _ in indexes):
            why = f" Your index {indexes[0][0]} is not UNIQUE, so it cannot tell the old and the new rows apart."
        elif indexes and all(partial or expr for _, unique, partial, expr in indexes if unique):
            name = next(n for n, unique, _, _ in indexes if unique)
            why = (f" Your unique index {name} has a WHERE clause (or an expression), so it does not cover every "
                   "row with plain columns.")
        return CheckResult(False, f"REFRESH ... CONCURRENTLY fails: {exc.diag.message_primary}.{why} Hint: it needs a "
                                  "UNIQUE index on column(s) that identify each row of the view (no WHERE clause).")
    return CheckResult(True, "REFRESH MATERIALIZED VIEW CONCURRENTLY works: readers keep reading the old rows while "
                             "it rebuilds, and it only writes the rows that changed.")


register(Exercise(
    id="02.determinant",
    title="Find the determinant",
    prompt=(
        "ex_shipments (key: shipment_id, line_no) is a flat table of shipment lines. Which single column,\n"
        "other than warehouse_city itself, determines warehouse_city? Give its name as a string. (You may use\n"
        "fd_violations from helpers.lessons.normalization to test candidates.)"
    ),
    setup_fn=_setup_shipments,
    checker=_check_determinant,
    answer_kind=str,
    answer_hint="a column name as a string, such as \"qty\"",
    lesson="02_normalization",
))

register(Exercise(
    id="02.decompose",
    title="Decompose a flat table into 3NF",
    prompt=(
        "Split ex_shipments into three tables in 3NF, keeping the column names:\n"
        "  ex_warehouse (warehouse_code PRIMARY KEY, warehouse_city)\n"
        "  ex_product (product_sku PRIMARY KEY, product_name)\n"
        "  ex_shipment_line (shipment_id, line_no, warehouse_code, product_sku, qty), PRIMARY KEY (shipment_id,\n"
        "  line_no), with foreign keys to the other two. Joining them back must give exactly ex_shipments."
    ),
    setup_fn=_setup_shipments,
    checker=_check_decompose,
    lesson="02_normalization",
    starting_answer=None,
    quiet_until_changed=True,
))

register(Exercise(
    id="02.concurrent_refresh",
    title="Refresh a materialized view without blocking readers",
    prompt=(
        "ex_genre_sales is a materialized view of lines and revenue per genre. Make\n"
        "REFRESH MATERIALIZED VIEW CONCURRENTLY ex_genre_sales possible, then run the check."
    ),
    setup_fn=_setup_refresh,
    checker=_check_refresh,
    lesson="02_normalization",
    starting_answer=None,
    quiet_until_changed=True,
))
