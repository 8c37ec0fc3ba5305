"""``python -m helpers bench load``: how fast the loader is, against the practical ceiling and ``to_sql``.

Introduced in 00_start_here (the loader). In one run, on the workbook's server, with scratch databases that
are dropped afterwards:

1. the loader (:func:`helpers.data.datasets.load_into`): rows/s of the COPY phase with generation included, and
   the whole load (keys, indexes, ``VACUUM (ANALYZE)``) in seconds. The loader sends ``plays`` (the big
   table) in binary COPY format, which spares the server parsing numbers and timestamps, so it can beat
   the CSV ceiling;
2. the ceiling: the same rows, already written to CSV files, loaded with ``\\copy`` by the bundled ``psql``
   into the same empty tables;
3. ``pandas.DataFrame.to_sql(method="multi", chunksize=...)`` on a proportional sample of the same files
   (the whole data set would take minutes);
4. a lesson database copied from the loaded database (``CREATE DATABASE ... TEMPLATE``).

Loader and ``psql`` runs alternate, ``--repeat`` times each; medians are reported with min-max.
The last line is machine-readable::

    loader_vs_copy=R1 loader_vs_to_sql=R2 default_load_s=S template_copy_s=T
"""
from __future__ import annotations

import argparse
import secrets
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql as pgsql

from helpers.data import datasets, generate
from helpers.fmt import fmt_rate, fmt_ratio, fmt_time


def _write_csv_files(scale: str, out: Path) -> list[tuple[str, Path, bool, int]]:
    """The loader's exact input, as files: (table, path, has_header, rows) in load order."""
    files = []
    for i, (table, header, source) in enumerate(datasets._segments(scale, None, binary=False)):
        path = out / f"{i:02d}_{table}_{source[0]}.csv"
        rows = 0
        with path.open("wb") as fh:
            for chunk in datasets._chunks(source, scale, None):
                fh.write(chunk)
                rows += chunk.count(b"\n")
        files.append((table, path, header, rows - (1 if header else 0)))
    return files


def _create_tables(conn: psycopg.Connection) -> None:
    create, _ = datasets.schema_statements()
    for stmt in create:
        conn.execute(stmt)


def _psql_copy(psql: Path, conninfo: str, files, tmp: Path) -> float:
    lines = []
    for table, path, header, _ in files:
        cols = ", ".join(_columns(table, path, header))
        opts = "FORMAT csv, HEADER true" if header else "FORMAT csv"
        lines.append(f"\\copy {table} ({cols}) FROM '{path}' WITH ({opts})")
    script = tmp / "copy.psql"
    script.write_text("\n".join(lines) + "\n")
    t = time.perf_counter()
    subprocess.run([str(psql), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", conninfo, "-f", str(script)],
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def _columns(table: str, path: Path, header: bool) -> list[str]:
    if header:
        with path.open(encoding="utf-8") as fh:
            return fh.readline().strip().split(",")
    return list(generate.COLUMNS[table])


def _to_sql(url: str, conn: psycopg.Connection, files, sample_rows: int, total_rows: int) -> tuple[int, float]:
    """Rows inserted and seconds taken by ``to_sql`` for a proportional sample (typed frames built untimed)."""
    import json

    import pandas as pd
    from sqlalchemy import create_engine
    from sqlalchemy.dialects.postgresql import JSONB

    frac = min(1.0, sample_rows / total_rows)
    frames = []
    for table, path, header, rows in files:
        n = max(1, round(rows * frac))
        df = pd.read_csv(path, nrows=n, header=0 if header else None, keep_default_na=True)
        if not header:
            df.columns = list(generate.COLUMNS[table])
        types = dict(conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped", (table,)).fetchall())
        dtype = {}
        for col in df.columns:  # what a pandas user would have: real datetimes and parsed JSON
            if types[col].startswith("timestamp"):
                df[col] = pd.to_datetime(df[col], utc="with time zone" in types[col])
            elif types[col] == "jsonb":
                df[col] = df[col].map(json.loads)
                dtype[col] = JSONB
        frames.append((table, df, dtype))
    engine = create_engine(url)
    try:
        t = time.perf_counter()
        rows = 0
        for table, df, dtype in frames:
            chunk = max(1, min(10_000, 65_000 // len(df.columns)))  # bind parameters per statement < 65,535
            df.to_sql(table, engine, if_exists="append", index=False, method="multi", chunksize=chunk,
                      dtype=dtype or None)
            rows += len(df)
        return rows, time.perf_counter() - t
    finally:
        engine.dispose()


def main(argv: list[str]) -> int:
    """Run the benchmark; print the figures and the summary line. Returns a process exit code."""
    from helpers import db
    from helpers.core import server

    ap = argparse.ArgumentParser(prog="python -m helpers bench load", description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", default="default", choices=list(generate.SCALES))
    ap.add_argument("--repeat", type=int, default=3, help="loader and psql runs each (alternating); default 3")
    ap.add_argument("--to-sql-rows", type=int, default=30_000,
                    help="rows in the proportional sample given to DataFrame.to_sql; default 30000")
    args = ap.parse_args(argv)

    tgt = db.target()
    psql = server.bin_dir() / "psql"
    admin = db.connect(tgt=tgt)
    db.check_server(admin)
    role = admin.info.user
    created: list[str] = []

    def scratch(kind: str, template: str | None = None) -> tuple[str, float]:
        name = db.db_name(role, f"bench_{kind}_{secrets.token_hex(3)}")
        t = time.perf_counter()
        db.create_own(admin, name, template=template, kind="scratch")
        elapsed = time.perf_counter() - t
        created.append(name)
        return name, elapsed

    def drop(name: str) -> None:
        db.drop_own(admin, name)
        created.remove(name)

    print(f"Server: PostgreSQL {db.server_version(admin)} ({tgt.where}); scale {args.scale!r}, "
          f"{args.repeat} run(s) each of the loader and psql, alternating.")
    try:
        with tempfile.TemporaryDirectory(prefix="pdw_bench_") as tmpdir:
            tmp = Path(tmpdir)
            files = _write_csv_files(args.scale, tmp)
            total_rows = sum(f[3] for f in files)
            size = sum(f[1].stat().st_size for f in files)
            print(f"Data: {total_rows:,} rows in {len(files)} CSV streams ({size / 1e6:.0f} MB uncompressed).")

            load_copy, load_total, psql_times = [], [], []
            kept: str | None = None
            for i in range(args.repeat):
                name, _ = scratch("loader")
                timings: dict[str, float] = {}
                with db.connect(name, tgt=tgt, timeout="0") as conn:
                    t = time.perf_counter()
                    counts = datasets.load_into(conn, args.scale, progress=False, timings=timings)
                    load_total.append(time.perf_counter() - t)
                load_copy.append(timings["copy"])
                assert sum(counts.values()) == total_rows, (sum(counts.values()), total_rows)
                if kept is None:
                    kept = name
                else:
                    drop(name)

                name, _ = scratch("psql")
                with db.connect(name, tgt=tgt, timeout="0") as conn:
                    _create_tables(conn)
                conninfo = psycopg.conninfo.make_conninfo(**{**tgt.kwargs, "dbname": name})
                psql_times.append(_psql_copy(psql, conninfo, files, tmp))
                with db.connect(name, tgt=tgt) as conn:
                    loaded = sum(conn.execute(pgsql.SQL("SELECT count(*) FROM {}").format(pgsql.Identifier(t))
                                              ).fetchone()[0] for t in datasets.table_names())
                assert loaded == total_rows, (loaded, total_rows)
                drop(name)

            name, _ = scratch("to_sql")
            with db.connect(name, tgt=tgt) as conn:
                _create_tables(conn)
                sample, to_sql_s = _to_sql(tgt.sqlalchemy_url(name), conn, files, args.to_sql_rows, total_rows)
                loaded = sum(conn.execute(pgsql.SQL("SELECT count(*) FROM {}").format(pgsql.Identifier(t))
                                          ).fetchone()[0] for t in datasets.table_names())
                assert loaded == sample, (loaded, sample)
            drop(name)

            copies = []
            for _ in range(3):
                name, elapsed = scratch("lesson", template=kept)
                copies.append(elapsed)
                drop(name)
    finally:
        for name in list(created):
            db.drop_own(admin, name)
        admin.close()

    copy_s = statistics.median(load_copy)
    loader_rate = total_rows / copy_s
    ceiling_rate = total_rows / statistics.median(psql_times)
    to_sql_rate = sample / to_sql_s
    default_load_s = statistics.median(load_total)
    template_s = statistics.median(copies)
    print(f"Loader, COPY phase incl. generation: {fmt_rate(loader_rate)} "
          f"(median {fmt_time(copy_s)}, {fmt_time(min(load_copy))}-{fmt_time(max(load_copy))})")
    print(f"Loader, whole load (keys, indexes, VACUUM ANALYZE): median {fmt_time(default_load_s)} "
          f"({fmt_time(min(load_total))}-{fmt_time(max(load_total))})")
    print(f"psql \\copy of the same rows from CSV files (ceiling): {fmt_rate(ceiling_rate)} "
          f"(median {fmt_time(statistics.median(psql_times))}, "
          f"{fmt_time(min(psql_times))}-{fmt_time(max(psql_times))})")
    print(f"DataFrame.to_sql(method='multi') on a {sample:,}-row proportional sample: {fmt_rate(to_sql_rate)} "
          f"({fmt_time(to_sql_s)})")
    print(f"Lesson database from the loaded template: median {fmt_time(template_s)} "
          f"(of 3: {', '.join(fmt_time(c) for c in copies)})")
    print(f"Loader vs ceiling {fmt_ratio(loader_rate / ceiling_rate)}, vs to_sql {fmt_ratio(loader_rate / to_sql_rate)}")
    print(f"loader_vs_copy={loader_rate / ceiling_rate:.2f} loader_vs_to_sql={loader_rate / to_sql_rate:.0f} "
          f"{args.scale}_load_s={default_load_s:.1f} template_copy_s={template_s:.2f}")
    return 0
