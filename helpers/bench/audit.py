"""Benchmark of the audit on a big catalog: ``python -m helpers bench audit`` (the audit is lesson 13's).

Builds, in a scratch database that is dropped afterwards, ``--tables`` tables (default 1,000) with five indexes each
(5,000 indexes: the primary key, a foreign key's index, a unique index, a composite one and a redundant one), a
foreign key from every table to the previous one, a few rows each and ANALYZE; then runs :func:`helpers.audit.audit`
``--repeat`` times and prints the median and range. The issue's target is under 5 s; nothing is asserted here.
"""
from __future__ import annotations

import argparse
import statistics
import time

from helpers import db
from helpers.audit import audit
from helpers.fmt import fmt_time

__all__ = ["main", "build"]


def build(conn, tables: int) -> None:
    """The synthetic schema: ``tables`` tables, 5 indexes each, a chain of foreign keys."""
    for i in range(tables):
        parent = f", parent_id int REFERENCES b{i - 1} (id)" if i else ", parent_id int"
        conn.execute(f"""
            CREATE TABLE b{i} (id int PRIMARY KEY, code text UNIQUE{parent}, price numeric CHECK (price >= 0),
                               created_at timestamptz NOT NULL DEFAULT now(), status text);
            CREATE INDEX b{i}_parent_idx ON b{i} (parent_id);
            CREATE INDEX b{i}_status_created_idx ON b{i} (status, created_at);
            CREATE INDEX b{i}_status_idx ON b{i} (status);
            INSERT INTO b{i} (id, code, parent_id, price, status)
                SELECT g, 'c' || g, {'g' if i else 'NULL'}, g, 'new' FROM generate_series(1, 3) g""")
    conn.execute("ANALYZE")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m helpers bench audit", description=__doc__.split("\n\n")[0])
    p.add_argument("--tables", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args(argv)
    with db.scratch_database("bench_audit") as conn:
        t0 = time.perf_counter()
        build(conn, args.tables)
        n_idx = conn.execute("SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
                             "WHERE c.relnamespace = 'public'::regnamespace").fetchone()[0]
        print(f"built {args.tables:,} tables and {n_idx:,} indexes in {fmt_time(time.perf_counter() - t0)}")
        audit(conn)  # warm-up: catalog caches
        times, report = [], None
        for _ in range(args.repeat):
            report = audit(conn)
            times.append(report.seconds)
        print(report.summary())
        print(f"findings by check: {report.by_check()}")
        print(f"audit of {args.tables:,} tables / {n_idx:,} indexes: median {fmt_time(statistics.median(times))} "
              f"(min {fmt_time(min(times))}, max {fmt_time(max(times))}, {args.repeat} runs); target < 5 s")
    return 0
