"""Bring your own data: CSV or Parquet files into a workbook database, loaded with COPY (13_design_checklist).

``python -m helpers data import PATH.csv|PATH.parquet|DIR --lesson NAME [--type [TABLE.]COLUMN=TYPE ...]`` creates one table per
file (named after the file), infers each column's type from its values, and streams the file to the server with
``COPY ... FROM STDIN (FORMAT csv, HEADER true)``: the server parses the rows, as with the music store's loader.
The database is the workbook's ``pdw_<role>_<NAME>`` (created empty if it does not exist yet, and marked as the
workbook's, so ``reset`` can drop it); :func:`open_lesson` then gives a notebook a ``Lesson`` on it *without*
re-creating it, so every widget and :func:`helpers.audit.audit` work on your data.
Parquet files keep their columns' own types (mapped to PostgreSQL's) and need pyarrow, the ``parquet`` extra
(``pip install -e '.[parquet]'``); without it, importing one says so in one sentence.
"""
from __future__ import annotations

import contextlib
import csv
import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Iterable

import psycopg
from psycopg import sql as pgsql

from helpers import db
from helpers.core import settings
from helpers.core.errors import WorkbookError

__all__ = ["infer_types", "import_path", "open_lesson", "ImportResult"]

SAMPLE_ROWS = 100_000  # rows read to infer types; --type overrides a guess a later row would break
INT4_MAX = 2_147_483_647
_TRUE_FALSE = {"true", "false", "t", "f", "yes", "no"}


def _kind(value: str) -> str:
    """The narrowest type a single non-empty value fits: integer, bigint, numeric, boolean, date, timestamptz, text."""
    v = value.strip()
    if re.fullmatch(r"[+-]?\d+", v):
        return "integer" if abs(int(v)) <= INT4_MAX else ("bigint" if abs(int(v)) < 2 ** 63 else "numeric")
    if re.fullmatch(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?", v):
        try:
            Decimal(v)
            return "numeric"
        except InvalidOperation:
            return "text"
    if v.lower() in _TRUE_FALSE:
        return "boolean"
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", v):
        try:
            date.fromisoformat(v)
            return "date"
        except ValueError:
            return "text"
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)?", v):
        try:
            datetime.fromisoformat(v.replace("Z", "+00:00"))
            return "timestamptz"
        except ValueError:
            return "text"
    return "text"


_WIDEN = {("integer", "bigint"): "bigint", ("integer", "numeric"): "numeric", ("bigint", "numeric"): "numeric",
          ("date", "timestamptz"): "timestamptz"}


def _merge(a: str | None, b: str) -> str:
    if a is None or a == b:
        return b
    return _WIDEN.get((a, b)) or _WIDEN.get((b, a)) or "text"


def infer_types(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    """A PostgreSQL type per column: the narrowest that every non-empty value fits (empty is NULL; all empty: text)."""
    kinds: list[str | None] = [None] * len(header)
    for row in rows:
        for i, value in enumerate(row[:len(header)]):
            if value != "" and kinds[i] != "text":
                kinds[i] = _merge(kinds[i], _kind(value))
    return [k or "text" for k in kinds]


def _name(raw: str) -> str:
    name = re.sub(r"[^a-z0-9_]+", "_", raw.strip().lower()).strip("_") or "col"
    return ("_" + name if name[0].isdigit() else name)[:63]


@dataclass
class ImportResult:
    table: str
    rows: int
    columns: list[tuple[str, str]]

    def __str__(self) -> str:
        return f"{self.table}: {self.rows:,} rows; " + ", ".join(f"{c} {t}" for c, t in self.columns)


SUFFIXES = (".csv", ".parquet")

#: Arrow type (by its string form's prefix) -> PostgreSQL type, for Parquet files, whose columns carry their types.
_ARROW_TYPES = (("int8", "smallint"), ("int16", "smallint"), ("int32", "integer"), ("int64", "bigint"),
                ("uint8", "smallint"), ("uint16", "integer"), ("uint32", "bigint"), ("uint64", "numeric"),
                ("float", "real"), ("halffloat", "real"), ("double", "double precision"), ("bool", "boolean"),
                ("date32", "date"), ("date64", "date"), ("timestamp[s, tz", "timestamptz"),
                ("timestamp[ms, tz", "timestamptz"), ("timestamp[us, tz", "timestamptz"),
                ("timestamp[ns, tz", "timestamptz"), ("timestamp", "timestamp"), ("decimal", "numeric"),
                ("string", "text"), ("large_string", "text"), ("binary", "bytea"))


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in SUFFIXES)
        if not files:
            raise WorkbookError(f"{settings.show_path(path)} holds no .csv or .parquet files.")
        return files
    if not path.exists():
        raise WorkbookError(f"{settings.show_path(path)} does not exist.")
    if path.suffix.lower() not in SUFFIXES:
        raise WorkbookError(f"{path.name} is not a .csv or .parquet file (nor a directory of them).")
    return [path]


def import_parquet(conn: psycopg.Connection, path: Path, overrides: dict | None = None) -> ImportResult:
    """A Parquet file: its columns' own types (mapped to PostgreSQL's), its rows through the CSV path's COPY."""
    import tempfile

    try:
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq
    except ImportError:
        raise WorkbookError("Reading Parquet needs pyarrow: install it with .venv/bin/pip install -e '.[parquet]' "
                            "(or save the file as CSV).") from None
    try:
        data = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001  (pyarrow raises several types for a damaged file)
        raise WorkbookError(f"{path.name} could not be read as Parquet ({str(exc).splitlines()[0][:120]}).") from None
    table = _name(path.stem)
    typed = dict(overrides or {})
    for field in data.schema:
        arrow = str(field.type)
        pg = next((t for prefix, t in _ARROW_TYPES if arrow.startswith(prefix)), "text")
        if (None, _name(field.name)) not in typed:  # a --type column=... given by the learner wins
            typed.setdefault((table, _name(field.name)), pg)
    with tempfile.TemporaryDirectory() as tmp:
        as_csv = Path(tmp) / f"{path.stem}.csv"
        pacsv.write_csv(data, as_csv)
        return import_csv(conn, as_csv, typed)


def _overrides(specs: Iterable[str]) -> dict[tuple[str | None, str], str]:
    out = {}
    for spec in specs:
        m = re.fullmatch(r"\s*(?:([A-Za-z0-9_]+)\.)?([A-Za-z0-9_ ]+?)\s*=\s*(.+?)\s*", spec)
        if not m:
            raise WorkbookError(f"--type {spec!r} should look like column=type or table.column=type "
                                "(e.g. zip=text).")
        out[(_name(m.group(1)) if m.group(1) else None, _name(m.group(2)))] = m.group(3)
    return out


def import_csv(conn: psycopg.Connection, path: Path, overrides: dict | None = None) -> ImportResult:
    """Create a table named after the file and COPY the file into it (types inferred, ``overrides`` win)."""
    overrides = overrides or {}
    table = _name(path.stem)
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise WorkbookError(f"{path.name} is empty (not even a header line).") from None
        sample = (row for i, row in zip(range(SAMPLE_ROWS), reader))
        types = infer_types(header, sample)
    cols = []
    seen: set[str] = set()
    for raw, typ in zip(header, types):
        name = _name(raw)
        while name in seen:
            name += "_"
        seen.add(name)
        typ = overrides.get((table, name)) or overrides.get((None, name)) or typ
        cols.append((name, typ))
    create = pgsql.SQL("CREATE TABLE {} ({})").format(pgsql.Identifier(table), pgsql.SQL(", ").join(
        pgsql.SQL("{} {}").format(pgsql.Identifier(c), pgsql.SQL(t)) for c, t in cols))
    copy = pgsql.SQL("COPY {} FROM STDIN (FORMAT csv, HEADER true)").format(pgsql.Identifier(table))
    try:
        with conn.transaction():
            conn.execute(create)
            with conn.cursor() as cur:
                with cur.copy(copy) as cp, path.open("rb") as f:
                    while chunk := f.read(1 << 20):
                        cp.write(chunk)
                rows = cur.rowcount
            conn.execute(pgsql.SQL("ANALYZE {}").format(pgsql.Identifier(table)))
    except psycopg.Error as exc:
        raise WorkbookError(f"Importing {path.name} failed: {db.explain_sql_error(exc)}{_hint(exc, table)}") from None
    return ImportResult(table, rows, cols)


def _hint(exc: psycopg.Error, table: str) -> str:
    """What to do about a failed import: a value the inferred type refuses, or a table that is already there."""
    state = getattr(exc, "sqlstate", None) or ""
    if state == "42P07":
        return f" (table {table!r} is already here: import into another --lesson, or drop the table first)."
    if state in ("22P02", "22003", "22007", "22008"):  # a value the column's type refuses (text, range, date/time)
        return " (override a column's type with --type column=text)."
    return "."


def import_path(path: str | Path, lesson: str, type_overrides: Iterable[str] = ()) -> list[ImportResult]:
    """Import a CSV or Parquet file, or every such file of a directory, into the workbook database of ``lesson``."""
    files = _files(Path(path))
    overrides = _overrides(type_overrides)
    tgt = db.target()
    with db.connect(tgt=tgt) as admin:
        db.check_server(admin)
        name = db.db_name(admin.info.user, lesson)
        created = not db.exists(admin, name)
        if created:
            db.create_own(admin, name, kind="lesson", lesson=lesson, namespace=settings.namespace(), imported=True)
        elif db.marker_of(admin, name) is None or db.owner_of(admin, name) != admin.info.user:
            raise WorkbookError(f"Database {name!r} was not created by the workbook for you; it is left untouched.")
    try:
        with db.connect(name, tgt=tgt, timeout="0") as conn:
            return [(import_parquet if f.suffix.lower() == ".parquet" else import_csv)(conn, f, overrides)
                    for f in files]
    except BaseException:
        if created:  # a database this call created for an import that failed: do not leave it behind,
            with contextlib.suppress(Exception), db.connect(tgt=tgt) as admin:  # unless someone is using it already
                db.drop_own(admin, name, force=False)
        raise


def open_lesson(name: str) -> db.Lesson:
    """A Lesson on an existing workbook database (for example one ``data import`` filled), without re-creating it."""
    tgt = db.target()
    with db.connect(tgt=tgt) as admin:
        dbname = db.db_name(admin.info.user, name)
        if not db.exists(admin, dbname):
            raise WorkbookError(f"There is no database for {name!r} yet; import into it first "
                                f"(python -m helpers data import PATH.csv --lesson {name}).")
        version = db.server_version(admin)
    conn = db.connect(dbname, tgt=tgt, app=f"pdw:{name}")
    return db.Lesson(name=name, dbname=dbname, scale="imported", target=tgt, version=version, conn=conn)
