"""Lesson 11 (scaling): connections and pools, PgBouncer, memory settings, vertical scaling; replicas and sharding.

Everything that is measured here runs on **private** PostgreSQL 18 servers (:mod:`helpers.private`), whichever
server the rest of the workbook uses: the lesson changes their settings, restarts them and puts PgBouncer in
front of one, which it must never do to the learner's server. They stop with the notebook's kernel.

* :func:`bench`, :func:`compare_connections`: requests/s and p95 latency of N concurrent clients, connecting per
  request, through a ``psycopg_pool`` pool, or through PgBouncer (:mod:`helpers.pgbouncer`); :func:`connection_setup`
  reads the server's own set-up time per connection (``log_connections = 'setup_durations'``, PostgreSQL 18);
  :func:`server_backends` counts the server's client backends.
* :func:`transaction_mode_breaks`, :func:`prepared_with_tracking`: what transaction pooling does to ``SET``, advisory
  locks and prepared statements, and prepared statements with PgBouncer 1.21+'s ``max_prepared_statements``.
* :func:`pool_sizes`, :func:`pool_sizing`, :func:`plot_pool_sizing`: throughput, p95, and per query the wall time, the
  server's CPU time and its wait for a core, as the pool grows past the core count.
* :data:`POOL_SETTINGS`: SQLAlchemy's pool settings next to Prisma's.
* :func:`sort_with` (``COLLATE "C"`` by default), :func:`cache_cold_warm` (disk cold, OS-cache warm, warm),
  :func:`parallel_scan`: work_mem spills, shared_buffers, parallel workers.
* :func:`stale_read`, :func:`commit_latency`, :func:`routing_demo`, :func:`promotion_demo`,
  :func:`global_unique_violation`: a streaming standby and postgres_fdw shards (:mod:`helpers.replicas`).
* Exercises ``11.read_your_writes`` and ``11.route_shard`` (solutions in :mod:`helpers.lessons.solutions.scaling`).
"""
from __future__ import annotations

import contextlib
import inspect
import os
import random
import re
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import pandas as pd
import psycopg

from sqlalchemy import String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from helpers import private, replicas
from helpers.core.errors import WorkbookError
from helpers.exercises import CheckResult, Exercise, register
from helpers.timing import as_connection, taking_turns

__all__ = ["STRATEGIES", "Result", "bench", "SETUP_LOG", "log_offset", "connection_setup", "compare_connections", "server_backends", "transaction_mode_breaks",
           "prepared_with_tracking", "pool_sizing", "plot_pool_sizing", "pool_sizes",
           "POOL_SETTINGS", "make_work_table", "sqlalchemy_engine", "cores", "SORT_ROWS", "make_sort_table", "sort_with",
           "sort_rounds",
           "temp_files", "drop_os_cache", "IN_CACHE", "COLD_STATES", "cache_cold_warm", "make_scan_table", "parallel_scan", "SETTINGS_FIRST"]

QUERY = "SELECT 1"
STRATEGIES = ("connect per request", "psycopg_pool", "PgBouncer (transaction mode)")


def cores() -> int:
    """CPU cores this process may use: the affinity mask, lowered by a cgroup v2 CPU quota (``docker --cpus``)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        if quota != "max":
            n = min(n, max(1, round(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return n


@dataclass
class Result:
    strategy: str
    clients: int
    requests: int
    seconds: float
    latencies: list[float]
    errors: int = 0
    held: list[float] | None = None   # pool only: time each request held its connection (the query itself)
    cpu: float | None = None          # pool only: CPU seconds the pool's server backends used during the run
    wait: float | None = None         # pool only, Linux: seconds those backends were runnable, waiting for a core

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def p95(self) -> float:
        return statistics.quantiles(self.latencies, n=20)[18] if len(self.latencies) >= 20 else max(self.latencies)

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies)


def _backend_sched(pids: list[int]) -> tuple[float, float | None]:
    """(CPU seconds used so far, seconds spent runnable but waiting for a core) by these server processes.

    Both from /proc/PID/schedstat on Linux (its first two fields, in nanoseconds: time on a CPU, time waiting on a
    run queue). Elsewhere the CPU time comes from psutil and the wait is None (no portable source)."""
    cpu, wait = 0.0, 0.0
    have_wait = True
    for pid in pids:
        try:
            with open(f"/proc/{pid}/schedstat") as fh:
                fields = fh.read().split()
            cpu += int(fields[0]) / 1e9
            wait += int(fields[1]) / 1e9
        except (OSError, ValueError, IndexError):
            import psutil

            have_wait = False
            try:
                t = psutil.Process(pid).cpu_times()
                cpu += t.user + t.system
            except psutil.Error:
                pass
    return cpu, (wait if have_wait else None)


def _run_clients(clients: int, per_client: int, one: Callable[[], Any]) -> tuple[float, list[float], int, list]:
    """``clients`` threads each run ``one()`` ``per_client`` times; wall time, every latency, errors, and what
    ``one()`` returned (when not None)."""
    lat: list[list[float]] = [[] for _ in range(clients)]
    ret: list[list[Any]] = [[] for _ in range(clients)]
    errors = [0] * clients
    start = threading.Barrier(clients + 1)

    def worker(i: int) -> None:
        start.wait()
        for _ in range(per_client):
            t = time.perf_counter()
            try:
                x = one()
                if x is not None:
                    ret[i].append(x)
            except psycopg.Error:
                errors[i] += 1
            lat[i].append(time.perf_counter() - t)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join(300)
    return (time.perf_counter() - t0, [x for part in lat for x in part], sum(errors),
            [x for part in ret for x in part])


def bench(strategy: str, server: "private.PrivateServer", *, bouncer: Any = None, clients: int = 8,
          per_client: int = 100, pool_size: int = 4, query: str = QUERY, serial: bool = False) -> Result:
    """``clients`` threads each send ``per_client`` requests (``query`` in its own transaction) with one strategy."""
    if strategy == "connect per request":
        def one() -> None:
            with psycopg.connect(server.dsn(), autocommit=True) as conn:
                conn.execute(query).fetchall()
        secs, lat, err, _ = _run_clients(clients, per_client, one)
    elif strategy == "psycopg_pool":
        from psycopg_pool import ConnectionPool

        pids: list[int] = []

        def configure(conn: psycopg.Connection) -> None:   # each new pool connection: note its backend's pid
            pids.append(conn.info.backend_pid)

        with ConnectionPool(server.dsn(), min_size=pool_size, max_size=pool_size, open=True, configure=configure,
                            kwargs={"autocommit": True, **({"options": "-c max_parallel_workers_per_gather=0"}
                                                           if serial else {})}) as pool:
            pool.wait(30)
            cpu0, wait0 = _backend_sched(pids)

            def one() -> None:
                with pool.connection() as conn:
                    t = time.perf_counter()
                    conn.execute(query).fetchall()
                    return time.perf_counter() - t
            secs, lat, err, held = _run_clients(clients, per_client, one)
            cpu1, wait1 = _backend_sched(pids)
        waited = wait1 - wait0 if wait0 is not None and wait1 is not None else None
        return Result(strategy, clients, clients * per_client, secs, lat, err, held, cpu1 - cpu0, waited)
    elif strategy == STRATEGIES[2]:
        if bouncer is None:
            raise WorkbookError("Pass bouncer=pgbouncer.start(server) to measure through PgBouncer.")

        def one() -> None:
            with psycopg.connect(bouncer.dsn(), autocommit=True, prepare_threshold=None) as conn:
                conn.execute(query).fetchall()
        secs, lat, err, _ = _run_clients(clients, per_client, one)
    else:
        raise WorkbookError(f"Unknown strategy {strategy!r}: use one of {', '.join(STRATEGIES)}.")
    return Result(strategy, clients, clients * per_client, secs, lat, err)


def compare_connections(server: "private.PrivateServer", bouncer: Any, *, rounds: int = 3, clients: int = 8,
                        per_client: int = 30, pool_size: int = 4) -> dict[str, Result]:
    """The three strategies measured in turn, ``rounds`` times (ABCABC...), so that a change of load on the machine
    hits all three; per strategy the round with the median rate."""
    runs: dict[str, list[Result]] = {s: [] for s in STRATEGIES}
    for _ in range(rounds):
        runs[STRATEGIES[0]].append(bench(STRATEGIES[0], server, clients=clients, per_client=per_client))
        runs[STRATEGIES[1]].append(bench(STRATEGIES[1], server, clients=clients, per_client=per_client * 5,
                                         pool_size=pool_size))
        runs[STRATEGIES[2]].append(bench(STRATEGIES[2], server, bouncer=bouncer, clients=clients,
                                         per_client=per_client * 2))
    return {s: sorted(rs, key=lambda r: r.rate)[len(rs) // 2] for s, rs in runs.items()}


def server_backends(server: "private.PrivateServer", settle_at: int | None = None, timeout: float = 10) -> int:
    """Client backends on the server, not counting the connection that asks. With ``settle_at``: poll (with a
    timeout) until at most that many remain, since a backend whose client just closed takes a moment to exit."""
    q = ("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
         "AND pid <> pg_backend_pid()")
    deadline = time.monotonic() + timeout
    n = server.scalar(q)
    while settle_at is not None and n > settle_at and time.monotonic() < deadline:
        time.sleep(0.05)
        n = server.scalar(q)
    return n


#: The private server of the connection section logs each connection's set-up time (PostgreSQL 18).
SETUP_LOG = {"log_connections": "setup_durations"}


def log_offset(server: "private.PrivateServer") -> int:
    """The server log's current size: pass it to :func:`connection_setup` to read only what follows."""
    path = server.root / "server.log"
    return path.stat().st_size if path.exists() else 0


def connection_setup(server: "private.PrivateServer", since: int = 0) -> dict[str, float]:
    """Medians (ms) of the ``connection ready: setup total=..., fork=..., authentication=...`` lines that
    ``log_connections = 'setup_durations'`` (PostgreSQL 18) wrote after byte ``since``; and how many there were."""
    with open(server.root / "server.log", "rb") as fh:
        fh.seek(since)
        text = fh.read().decode(errors="replace")
    rows = [tuple(float(x) for x in m) for m in re.findall(
        r"connection ready: setup total=([\d.]+) ms, fork=([\d.]+) ms, authentication=([\d.]+) ms", text)]
    if not rows:
        return {"connections": 0}
    return {"connections": len(rows), **{k: statistics.median(r[i] for r in rows)
                                          for i, k in enumerate(("total ms", "fork ms", "authentication ms"))}}


def transaction_mode_breaks(bouncer: Any, dbname: str = "one") -> dict[str, Any]:
    """Two clients, A and B, through a PgBouncer database whose pool has ONE server connection (transaction mode).
    Returns what B sees of A's session state, and what psycopg's prepared statements do with and without
    ``prepare_threshold=None``."""
    out: dict[str, Any] = {}
    a, b = bouncer.connect(dbname), bouncer.connect(dbname)
    try:
        a.execute("SET statement_timeout = '1234ms'")                 # A's "session" setting ...
        out["B sees A's SET"] = b.execute("SHOW statement_timeout").fetchone()[0]  # ... is on B's server connection
        a.execute("RESET statement_timeout")
        out["A locks 42"] = a.execute("SELECT pg_try_advisory_lock(42)").fetchone()[0]
        out["B also gets lock 42"] = b.execute("SELECT pg_try_advisory_lock(42)").fetchone()[0]
        a.execute("SELECT pg_advisory_unlock_all()")
    finally:
        a.close()
        b.close()
    for threshold in (0, None):   # 0: prepare every statement at once (psycopg's default is after 5 uses)
        a = psycopg.connect(bouncer.dsn(dbname), autocommit=True, prepare_threshold=threshold)
        b = psycopg.connect(bouncer.dsn(dbname), autocommit=True, prepare_threshold=threshold)
        try:
            a.execute("SELECT 1 AS from_a").fetchone()
            b.execute("SELECT 2 AS from_b").fetchone()
            out[f"prepare_threshold={threshold}"] = "works"
        except psycopg.errors.DuplicatePreparedStatement as exc:
            out[f"prepare_threshold={threshold}"] = f"{type(exc).__name__}: {exc}".strip()
        finally:
            a.close()
            b.close()
    with bouncer.connect(dbname) as c:   # leave the server connection clean
        c.execute("DEALLOCATE ALL")
    return out


def prepared_with_tracking(server: "private.PrivateServer", max_prepared_statements: int = 100) -> str | None:
    """On PgBouncer 1.21+: a second PgBouncer with ``max_prepared_statements`` set, and the same two clients with
    ``prepare_threshold=0`` on a one-connection pool; "works" or the error. None on older PgBouncers."""
    from helpers import pgbouncer

    if pgbouncer.version() < (1, 21):
        return None
    with pgbouncer.start(server, pool_size=1, extra_dbs={"one": 1},
                         max_prepared_statements=max_prepared_statements) as tracked:
        a = psycopg.connect(tracked.dsn("one"), autocommit=True, prepare_threshold=0)
        b = psycopg.connect(tracked.dsn("one"), autocommit=True, prepare_threshold=0)
        try:
            a.execute("SELECT 1 AS from_a").fetchone()
            b.execute("SELECT 2 AS from_b").fetchone()
            return "works"
        except psycopg.Error as exc:
            return f"{type(exc).__name__}: {exc}".strip()
        finally:
            a.close()
            b.close()


# ---------------------------------------------------------------- pool sizing

WORK_QUERY = "SELECT count(*), sum(id) FROM pool_work WHERE id % 7 = 3"  # ms of CPU, pages in shared_buffers


def make_work_table(server: "private.PrivateServer", rows: int = 200_000) -> None:
    """The table :func:`pool_sizing`'s query scans (small enough to stay in shared_buffers: pure CPU work)."""
    server.sql("DROP TABLE IF EXISTS pool_work")
    server.sql(f"CREATE TABLE pool_work AS SELECT g AS id FROM generate_series(1, {int(rows)}) g")
    server.sql("VACUUM ANALYZE pool_work")
    server.sql("SELECT count(*) FROM pool_work")  # load it into shared_buffers


def pool_sizes(ncores: int) -> tuple[tuple[int, ...], int]:
    """Pool sizes 1, c, 2c, 4c, 8c for c cores, and 8c clients: the same shape of experiment on any machine."""
    c = max(1, int(ncores))
    return tuple(sorted({1, c, 2 * c, 4 * c, 8 * c})), 8 * c


def pool_sizing(server: "private.PrivateServer", sizes=(1, 2, 4, 8, 16), *, clients: int = 16,
                per_client: int = 15, query: str = WORK_QUERY) -> pd.DataFrame:
    """Throughput and latency of ``clients`` threads sharing a ``psycopg_pool`` pool of each size; per query, the
    client's time from sending it to having its rows (``query ms``), and the server backends' CPU time and time spent
    waiting for a core (``wait ms per query``, NaN where /proc/PID/schedstat is missing), each a mean."""
    make_work_table(server)
    rows = []
    for size in sizes:
        r = bench("psycopg_pool", server, clients=clients, per_client=per_client, pool_size=size, query=query,
                  serial=True)
        rows.append({"pool size": size, "requests/s": r.rate, "p50 ms": r.p50 * 1000, "p95 ms": r.p95 * 1000,
                     "query ms": statistics.fmean(r.held) * 1000,   # a mean, like the CPU and the wait per query
                     "CPU ms per query": r.cpu / r.requests * 1000,
                     "wait ms per query": r.wait / r.requests * 1000 if r.wait is not None else float("nan"),
                     "errors": r.errors})
    return pd.DataFrame(rows).set_index("pool size")


def plot_pool_sizing(df: pd.DataFrame, ncores: int, clients: int | None = None):
    import matplotlib.pyplot as plt

    fig, ax1 = plt.subplots(figsize=(7, 3.9))
    ax1.plot(df.index, df["requests/s"], "o-", color="tab:blue", label="requests/s")
    ax1.set_xscale("log", base=2)
    ax1.set_xticks(list(df.index), [str(i) for i in df.index])
    ax1.set_xlabel("pool size (server connections)")
    ax1.set_ylabel("requests/s", color="tab:blue")
    ax1.set_ylim(bottom=0)
    ax2 = ax1.twinx()
    ax2.plot(df.index, df["p95 ms"], "s--", color="tab:red", label="p95 latency (with the wait for a connection)")
    ax2.plot(df.index, df["query ms"], "^:", color="tab:orange", label="time of the query itself (mean)")
    if "wait ms per query" in df and df["wait ms per query"].notna().all():
        ax2.plot(df.index, df["wait ms per query"], "v-.", color="tab:green",
                 label="server: waiting for a core (mean per query)")
    ax2.set_ylabel("ms", color="tab:red")
    handles = ax1.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax2.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=8, frameon=False)
    ax2.set_ylim(bottom=0)
    ax1.axvline(ncores, color="grey", lw=1, ls=":")
    ax1.text(ncores, 0, f" {ncores} cores", color="grey", va="bottom")
    ax1.set_title(f"Throughput, p95 latency and time per query, {clients or max(df.index)} concurrent clients")
    fig.tight_layout()
    return fig


#: SQLAlchemy's QueuePool settings and the closest Prisma setting (connection-string parameters).
POOL_SETTINGS = pd.DataFrame([
    ("pool_size=5", "connection_limit (default: 2 × physical CPUs + 1)",
     "connections kept open per process"),
    ("max_overflow=10", "(none: connection_limit is a hard cap)",
     "extra connections opened under load, closed when returned"),
    ("pool_timeout=30 (s)", "pool_timeout (default 10 s)",
     "how long a request waits for a free connection before an error"),
    ("pool_recycle=-1 (off)", "(none)", "close connections older than this (for servers/firewalls that drop idle ones)"),
    ("pool_pre_ping=False", "(none)", "test a connection with a round trip before handing it out"),
    ("poolclass=NullPool", "(none: connection_limit=1 per serverless instance is the nearest)",
     "no client-side pool: let an external pooler do the pooling"),
    ('connect_args={"prepare_threshold": None}', "pgbouncer=true",
     "no named prepared statements (for a transaction-mode pooler that does not track them)"),
    ('connect_args={"prepared_max": 100}', "statement_cache_size (default 100)",
     "how many prepared statements each connection keeps"),
    ('connect_args={"connect_timeout": 5}', "connect_timeout (default 5 s)",
     "how long opening a new connection may take"),
], columns=["SQLAlchemy create_engine(...)", "Prisma ORM 6 (URL parameter)", "what it controls"])


def sqlalchemy_engine(url: str, **pool: Any):
    """A SQLAlchemy engine with explicit pool settings (psycopg 3 driver)."""
    from sqlalchemy import create_engine

    return create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1), **pool)


# ---------------------------------------------------------------- memory

SORT_ROWS = 200_000


def make_sort_table(server: "private.PrivateServer", rows: int = SORT_ROWS) -> None:
    """A table of ``rows`` random-looking text keys (deterministic: md5 of the row number)."""
    server.sql("DROP TABLE IF EXISTS sort_me")
    server.sql(f"CREATE TABLE sort_me AS SELECT g AS id, md5(g::text) AS k FROM generate_series(1, {int(rows)}) g")
    server.sql("VACUUM ANALYZE sort_me")


def temp_files(conn: psycopg.Connection) -> tuple[int, int]:
    """(temp_files, temp_bytes) of the current database from pg_stat_database."""
    conn.execute("SELECT pg_stat_clear_snapshot()")
    return conn.execute("SELECT temp_files, temp_bytes FROM pg_stat_database "
                        "WHERE datname = current_database()").fetchone()


def sort_with(server: "private.PrivateServer", work_mem: str, repeat: int = 3, collate: str | None = "C") -> dict[str, Any]:
    """Sort ``sort_me`` by its text key under ``work_mem``; the sort method from EXPLAIN ANALYZE, the best of
    ``repeat`` times, and the growth of pg_stat_database's temp-file counters.

    ``collate="C"`` (the default) compares bytes; ``collate=None`` uses the database's collation (C.UTF-8 from libc
    on the private servers), which PostgreSQL does not treat as byte order: no abbreviated keys, and each comparison
    copies both strings and calls strcoll(). ``space`` is the plan's "Disk ~N kB" or "Memory ~N kB"."""
    with _sort_session(server, work_mem) as conn, server.connect() as observer:
        before = temp_files(observer)
        plan = "\n".join(r[0] for r in conn.execute(
            f"EXPLAIN (ANALYZE, BUFFERS, TIMING OFF, COSTS OFF) SELECT id FROM sort_me ORDER BY {_sort_key(collate)}"))
        times = [_timed_sort(conn, collate) for _ in range(repeat)]
        conn.execute("SELECT pg_stat_force_next_flush()")
        conn.execute("SELECT 1")  # the flush happens at the end of a statement
        deadline = time.monotonic() + 10
        after = temp_files(observer)
        spilled = "external merge" in plan
        while spilled and after[0] < before[0] + repeat + 1 and time.monotonic() < deadline:
            time.sleep(0.05)  # stats reach shared memory when the backend reports them: poll, with a timeout
            after = temp_files(observer)
    method = next((ln.strip() for ln in plan.splitlines() if "Sort Method" in ln), "")
    space = re.search(r"(Disk|Memory): (\d+)kB", method)
    return {"work_mem": work_mem, "sort method": method.split("Sort Method:")[1].split()[0] + (
        " merge" if "external merge" in method else ""), "external merge": spilled,
        "space": f"{space[1]} ~{int(space[2]):,} kB" if space else "",
        "seconds": min(times), "temp files": after[0] - before[0], "temp bytes": after[1] - before[1],
        "plan": plan}


def sort_rounds(server: "private.PrivateServer", runs: dict[str, tuple[str, str | None]],
                rounds: int = 5) -> dict[str, dict[str, Any]]:
    """Several sorts of ``sort_me``, timed taking turns; ``runs`` maps a label to (work_mem, collate).

    First :func:`sort_with` once for each (its plan, and the temp-file counters' growth over its EXPLAIN ANALYZE and
    one run); then ``rounds`` timed runs of each, on one connection per sort, the order rotating from round to round,
    so that a change of load on the machine hits every sort alike. ``seconds`` is each sort's fastest timed run."""
    out = {label: sort_with(server, work_mem, repeat=1, collate=collate)
           for label, (work_mem, collate) in runs.items()}
    times: dict[str, list[float]] = {label: [] for label in runs}
    with contextlib.ExitStack() as stack:
        conns = {label: stack.enter_context(_sort_session(server, work_mem)) for label, (work_mem, _) in runs.items()}
        for label in taking_turns(runs, rounds):
            times[label].append(_timed_sort(conns[label], runs[label][1]))
    for label in runs:
        out[label]["seconds"] = min(times[label])
        out[label]["runs"] = len(times[label])
    return out


def _sort_key(collate: str | None) -> str:
    return f'k COLLATE "{collate}"' if collate else "k"


@contextlib.contextmanager
def _sort_session(server: "private.PrivateServer", work_mem: str) -> Any:
    """A connection that sorts under ``work_mem``, without parallel workers (one process does the whole sort)."""
    with server.connect() as conn:
        conn.execute(f"SET work_mem = '{work_mem}'")
        conn.execute("SET max_parallel_workers_per_gather = 0")
        yield conn


def _timed_sort(conn: Any, collate: str | None) -> float:
    """Seconds to sort ``sort_me`` by its key (the OFFSET sends no rows back: the sort is what is timed)."""
    t = time.perf_counter()
    conn.execute(f"SELECT id FROM sort_me ORDER BY {_sort_key(collate)} OFFSET 1000000000").fetchall()
    return time.perf_counter() - t


def drop_os_cache(server: "private.PrivateServer", table: str) -> int:
    """Ask the operating system to forget a table's main-fork files (fsync, then posix_fadvise DONTNEED): the
    next read really goes to the storage. Bytes advised; 0 where posix_fadvise does not exist."""
    if not hasattr(os, "posix_fadvise"):
        return 0
    rel = server.scalar("SELECT pg_relation_filepath(%s::regclass)", (table,))
    first = server.pgdata / rel
    done = 0
    for path in [first, *sorted(first.parent.glob(first.name + ".*"), key=lambda p: int(p.suffix[1:]))]:
        if not path.suffix[1:].isdigit() and path != first:
            continue
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)   # fsync=off on the private servers: written pages may still be dirty, and DONTNEED keeps those
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            done += os.fstat(fd).st_size
        finally:
            os.close(fd)
    return done


IN_CACHE = ("SELECT count(*) FROM pg_buffercache b JOIN pg_class c ON b.relfilenode = pg_relation_filenode(c.oid) "
            "AND b.relforknumber = 0 "   # the main fork only, not the free-space or visibility maps
            "AND b.reldatabase = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "WHERE c.relname = 'cached'")
COLD_STATES = ("disk cold", "OS cache warm, shared_buffers cold", "shared_buffers warm")


def cache_cold_warm(server: "private.PrivateServer", rows: int = 100_000) -> dict[str, Any]:
    """Restart the server (shared_buffers start empty) and drop the table's files from the OS cache, then scan it
    three times: disk cold; after pg_buffercache_evict_relation() (PostgreSQL 18; the OS cache still warm); warm.
    Per scan: shared hit/read from EXPLAIN (BUFFERS), the read time from track_io_timing, pages cached after."""
    server.sql("CREATE EXTENSION IF NOT EXISTS pg_buffercache")
    server.sql("DROP TABLE IF EXISTS cached")
    server.sql(f"CREATE TABLE cached AS SELECT g AS id, repeat('x', 50) AS pad FROM generate_series(1, {int(rows)}) g")
    server.sql("VACUUM (ANALYZE, FREEZE) cached")
    server.sql("CHECKPOINT")
    server.restart()
    out: dict[str, Any] = {"pages": server.scalar("SELECT relpages FROM pg_class WHERE relname = 'cached'"),
                           "shared_buffers": server.scalar("SHOW shared_buffers")}
    out["OS cache dropped bytes"] = drop_os_cache(server, "cached")
    with server.connect() as conn:
        conn.execute("SET max_parallel_workers_per_gather = 0")
        conn.execute("SET track_io_timing = on")
        out["cached before"] = conn.execute(IN_CACHE).fetchone()[0]
        for i, state in enumerate(COLD_STATES):
            if i == 1:
                out["evicted"] = conn.execute("SELECT buffers_evicted FROM pg_buffercache_evict_relation("
                                              "'cached'::regclass)").fetchone()[0]
                out["cached before " + state] = conn.execute(IN_CACHE).fetchone()[0]
            plan = [r[0] for r in conn.execute(
                "EXPLAIN (ANALYZE, BUFFERS, TIMING OFF, COSTS OFF) SELECT count(*) FROM cached")]
            buf = next(ln for ln in plan if "Buffers:" in ln)
            io = next((ln for ln in plan if "I/O Timings:" in ln), "")
            m = re.search(r"shared read=([\d.]+)", io)
            out[state] = {"hit": _buffers(buf, "hit"), "read": _buffers(buf, "read"),
                          "read ms": float(m.group(1)) if m else 0.0,
                          "cached after": conn.execute(IN_CACHE).fetchone()[0]}
    return out


def _buffers(line: str, kind: str) -> int:
    m = re.search(rf"shared [^,]*?\b{kind}=(\d+)", line)
    return int(m.group(1)) if m else 0


# ---------------------------------------------------------------- vertical scaling: parallel workers

def make_scan_table(server: "private.PrivateServer", rows: int = 500_000) -> None:
    server.sql("DROP TABLE IF EXISTS scan_me")
    server.sql(f"CREATE TABLE scan_me AS SELECT g AS id, g % 1000 AS grp, md5(g::text) AS k "
               f"FROM generate_series(1, {int(rows)}) g")
    server.sql("VACUUM ANALYZE scan_me")


def parallel_scan(server: "private.PrivateServer", workers: int, repeat: int = 3) -> dict[str, Any]:
    """An aggregate over ``scan_me`` with ``max_parallel_workers_per_gather = workers``: workers planned and
    launched, best time of ``repeat``."""
    q = "SELECT grp, count(*), max(k) FROM scan_me GROUP BY grp"
    with server.connect() as conn:
        conn.execute(f"SET max_parallel_workers_per_gather = {int(workers)}")
        plan = [r[0] for r in conn.execute(f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) {q}")]
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            conn.execute(q).fetchall()
            times.append(time.perf_counter() - t)

    def num(word: str) -> int:
        line = next((ln for ln in plan if word in ln), "")
        return int(line.split(":")[1]) if line else 0
    return {"max_parallel_workers_per_gather": workers, "gather": any("Gather" in ln for ln in plan),
            "workers planned": num("Workers Planned"), "workers launched": num("Workers Launched"),
            "seconds": min(times)}


#: What to look at first when one server must do more (the measured ones are measured in this lesson).
SETTINGS_FIRST = pd.DataFrame([
    ("connections (a pool / PgBouncer)", "max_connections, pool size", "measured above (pool sizing)"),
    ("shared_buffers", "the docs: start near 25% of RAM", "cold vs warm measured above"),
    ("work_mem", "per sort/hash node, per connection", "spill vs in-memory measured above"),
    ("max_parallel_workers_per_gather", "big scans and aggregates", "measured below"),
    ("effective_cache_size", "planner's guess of the OS cache", "planner hint only, allocates nothing"),
    ("maintenance_work_mem", "VACUUM, CREATE INDEX", "not measured here"),
    ("max_wal_size / checkpoint_timeout", "write bursts, checkpoint spikes", "not measured here"),
    ("random_page_cost", "lower than 4 when random reads are cheap (SSD)", "not measured here"),
], columns=["setting", "what it is for", "in this lesson"])

# ---------------------------------------------------------------- part B: read replicas and sharding

__all__ += ["stale_read", "commit_latency", "routing_demo", "promotion_demo", "global_unique_violation",
           "exercise_pair", "exercise_cluster", "naive_read_after_write", "EX_CUSTOMERS"]


# ---------------------------------------------------------------- read-your-writes

def stale_read(pair: replicas.Pair, note: str = "order 1") -> dict:
    """Commit a row on the primary while the standby's replay is paused, wait until the standby has *received*
    that WAL, read the row there (missed), then resume and read again after waiting for the commit's LSN (seen).
    Deterministic: the pause, not timing, makes the first read stale. The note gets a unique suffix, so the cell
    can run again on the same pair."""
    pair.primary.sql("CREATE TABLE IF NOT EXISTS notes (id serial PRIMARY KEY, body text NOT NULL)")
    replicas.wait_for_lsn(pair.standby, replicas.current_lsn(pair.primary))  # the table exists on the standby
    note = f"{note} {time.time_ns()}"
    with replicas.paused(pair.standby):
        lsn = replicas.write(pair.primary, "INSERT INTO notes (body) VALUES (%s)", (note,))
        on_primary = pair.primary.scalar("SELECT count(*) FROM notes WHERE body = %s", (note,))
        with pair.standby.connect() as s:  # the WAL arrives asynchronously to the commit: poll for it
            replicas._poll(lambda: s.execute("SELECT pg_last_wal_receive_lsn() >= %s::pg_lsn", (lsn,)).fetchone()[0],
                           10, "The standby did not receive the commit's WAL within 10 s.")
            received = True
            on_standby = s.execute("SELECT count(*) FROM notes WHERE body = %s", (note,)).fetchone()[0]
    waited = replicas.wait_for_lsn(pair.standby, lsn)
    after = pair.standby.scalar("SELECT count(*) FROM notes WHERE body = %s", (note,))
    return {"commit_lsn": lsn, "on_primary": on_primary, "on_standby_at_once": on_standby,
            "wal_received_while_paused": received, "on_standby_after_wait": after, "wait_s": waited}


def commit_latency(pair: replicas.Pair, n: int = 60) -> dict:
    """Median COMMIT time of ``n`` one-row transactions, each ``SET LOCAL synchronous_commit`` to local (the standby
    is not waited for) or remote_apply (the standby named in ``synchronous_standby_names`` has applied it: only the
    transactions that ask for it wait), and whether the standby saw each row right after the commit returned.

    ``paused``: with the standby's replay paused, the COMMIT times of one local and one remote_write transaction
    (``local_s``, ``remote_write_s``), how many of their rows the standby showed (``seen_while_paused``), then a
    remote_apply COMMIT while replay resumes ``pause_s`` later (``commit_s``) and whether its row was visible
    right after (``seen_after``)."""
    pair.primary.sql("CREATE TABLE IF NOT EXISTS notes (id serial PRIMARY KEY, body text NOT NULL)")
    out: dict = {}
    replicas.set_sync(pair.primary, pair.standby.name)
    try:
        with pair.primary.connect() as p, pair.standby.connect() as s:
            def one(mode: str, body: str, at_commit: Callable[[], Any] = lambda: None) -> float:
                """BEGIN; SET LOCAL ...; INSERT; COMMIT (the setting ends with it): the COMMIT's seconds.
                ``at_commit`` runs just before the COMMIT is sent, inside its timing."""
                p.execute("BEGIN")
                p.execute(f"SET LOCAL synchronous_commit = {mode}")
                p.execute("INSERT INTO notes (body) VALUES (%s)", (body,))
                t0 = time.perf_counter()
                at_commit()
                p.execute("COMMIT")
                return time.perf_counter() - t0

            for mode in ("local", "remote_apply"):  # warm-up, not counted
                for _ in range(10):
                    one(mode, "warm-up")
            for i in range(n):  # alternated transaction by transaction: load hits both alike
                for mode in (("local", "remote_apply") if i % 2 else ("remote_apply", "local")):
                    times, seen = out.setdefault(mode, ([], []))
                    body = f"{mode} {len(times)} {time.time_ns()}"
                    times.append(one(mode, body))
                    seen.append(s.execute("SELECT count(*) FROM notes WHERE body = %s", (body,)).fetchone()[0])
            # The mechanism, shown without a stopwatch race: with the standby's replay paused, a local and a
            # remote_write commit return at once (the standby keeps receiving and writing WAL) and their rows are
            # not visible there yet; a remote_apply commit cannot return before the standby resumes, `pause`
            # seconds later, and applies it.
            pause = 1.0
            replicas.pause_replay(pair.standby)
            tag = time.time_ns()  # this call's rows only, if the cell runs again on the same pair
            bodies = {mode: f"{mode} while paused {tag}" for mode in ("local", "remote_write", "remote_apply")}
            quick = {mode: one(mode, bodies[mode]) for mode in ("local", "remote_write")}
            hidden = s.execute("SELECT count(*) FROM notes WHERE body = ANY(%s)",
                               ([bodies["local"], bodies["remote_write"]],)).fetchone()[0]
            timer = threading.Timer(pause, lambda: replicas.resume_replay(pair.standby))
            blocked = one("remote_apply", bodies["remote_apply"], at_commit=timer.start)
            timer.join()
            seen_after = s.execute("SELECT count(*) FROM notes WHERE body = %s", (bodies["remote_apply"],)).fetchone()[0]
    finally:
        replicas.resume_replay(pair.standby)
        replicas.set_sync(pair.primary, None)
    res = {mode: {"median_s": statistics.median(t), "q1_s": statistics.quantiles(t, n=4)[0],
                  "q3_s": statistics.quantiles(t, n=4)[2], "seen": sum(x == 1 for x in v), "n": len(t)}
           for mode, (t, v) in out.items()}
    res["paused"] = {"pause_s": pause, "commit_s": blocked, "local_s": quick["local"],
                     "remote_write_s": quick["remote_write"], "seen_while_paused": hidden, "seen_after": seen_after}
    return res


def naive_read_after_write(primary: private.PrivateServer, standby: private.PrivateServer, note: str) -> Any:
    """The buggy pattern: commit on the primary, read the row back from the standby at once."""
    with primary.connect() as p:
        p.execute("INSERT INTO ex_orders (note) VALUES (%s)", (note,))
    with standby.connect() as s:
        row = s.execute("SELECT note FROM ex_orders WHERE note = %s", (note,)).fetchone()
    return row[0] if row else None


# ---------------------------------------------------------------- routing in SQLAlchemy

def routing_demo(pair: replicas.Pair) -> dict:
    """An ORM model on the pair, one RoutingSession: which engine each step used, and what the reads saw."""
    class Base(DeclarativeBase):
        pass

    class Note(Base):
        __tablename__ = "routed_notes"
        id: Mapped[int] = mapped_column(primary_key=True)
        body: Mapped[str] = mapped_column(String(100))

    primary_engine, replica_engine, Session = replicas.router(pair.primary.url, pair.standby.url)
    Base.metadata.create_all(primary_engine)
    replicas.wait_for_lsn(pair.standby, replicas.current_lsn(pair.primary))
    steps = []
    try:
        with replicas.paused(pair.standby), Session() as session:
            note = Note(body=f"routed {time.time_ns()}")  # id from the table's sequence: the cell can run again
            session.add(note)
            session.flush()
            new_id = note.id  # the id came back with the INSERT (RETURNING), read before the commit expires it
            session.commit()
            steps.append(("add + commit (flush)", session.routed[-1], None))
            seen = session.scalars(select(Note.body).where(Note.id == new_id)).all()
            steps.append(("select after the commit", session.routed[-1], len(seen)))
            with session.use_primary():
                seen = session.scalars(select(Note.body).where(Note.id == new_id)).all()
            steps.append(("select in use_primary()", session.routed[-1], len(seen)))
            session.commit()
    finally:
        primary_engine.dispose()
        replica_engine.dispose()
    return {"steps": steps}


# ---------------------------------------------------------------- promotion

def promotion_demo(pair: replicas.Pair) -> dict:
    """Promote the standby: before/after ``pg_is_in_recovery()``, the time ``pg_promote`` took, that it then
    accepts a write, and that the old primary (still running: nobody fenced it) accepts one too (split brain)."""
    before = pair.standby.scalar("SELECT pg_is_in_recovery()")
    if not before:
        raise WorkbookError("This standby was already promoted: run the replica cell again for a new pair.")
    timeline_sql = "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)"
    old_timeline = pair.primary.scalar(timeline_sql)
    try:
        pair.standby.sql("CREATE TABLE refused (x int)")
        refused = False
    except psycopg.errors.ReadOnlySqlTransaction:
        refused = True
    seconds = replicas.promote(pair.standby)
    after = pair.standby.scalar("SELECT pg_is_in_recovery()")
    new_timeline = pair.standby.scalar(timeline_sql)
    pair.standby.sql("CREATE TABLE IF NOT EXISTS written_after_promotion (x int)")
    pair.primary.sql("CREATE TABLE IF NOT EXISTS written_on_old_primary (x int)")
    diverged = (pair.standby.scalar("SELECT to_regclass('written_on_old_primary') IS NULL")
                and pair.primary.scalar("SELECT to_regclass('written_after_promotion') IS NULL"))
    # the old primary's walsender leaves pg_stat_replication once it notices the disconnect: poll for it
    replicas._poll(lambda: not replicas.replication(pair.primary), 10,
                   "The old primary still lists a standby 10 s after the promotion.")
    standbys_left = len(replicas.replication(pair.primary))
    return {"in_recovery_before": before, "write_refused_before": refused, "promote_s": seconds,
            "in_recovery_after": after, "diverged": diverged, "old_primary_standbys": standbys_left,
            "timeline_old_primary": old_timeline, "timeline_promoted": new_timeline}


# ---------------------------------------------------------------- sharding: a constraint no shard can enforce

def global_unique_violation(cluster: replicas.ShardCluster) -> dict:
    """Try unique indexes on the coordinator, on order_id and on (customer_id, order_id) which includes the shard
    key: both refused, with the reason in the error's DETAIL (the partitions are foreign tables). Then insert an
    order_id that already exists for a customer on the other shard: each shard's primary key (customer_id,
    order_id) is satisfied, yet order_id is no longer unique across the shards."""
    refused: dict[str, tuple[str, str] | None] = {}
    with cluster.coordinator.connect() as c:
        for cols in ("order_id", "customer_id, order_id"):
            try:
                c.execute(f"CREATE UNIQUE INDEX ON orders ({cols})")
                refused[cols] = None
            except psycopg.Error as exc:
                refused[cols] = (exc.diag.message_primary, exc.diag.message_detail)
        owner = c.execute("SELECT customer_id FROM orders WHERE order_id = 1").fetchone()[0]
        owner_shard = replicas.shard_of(cluster, owner)
        other = next(cid for cid in range(1, 1000) if replicas.shard_of(cluster, cid) != owner_shard)
        c.execute("INSERT INTO orders VALUES (1, %s, now(), 1.00)", (other,))
        copies = c.execute("SELECT count(*) FROM orders WHERE order_id = 1").fetchone()[0]
        c.execute("DELETE FROM orders WHERE order_id = 1 AND customer_id = %s", (other,))
    return {"unique_index_refused": refused, "copies_of_order_1": copies, "shards": sorted({owner_shard,
            replicas.shard_of(cluster, other)})}


# ---------------------------------------------------------------- exercise 11.read_your_writes

_PAIRS: private.PerDatabase[replicas.Pair] = private.PerDatabase(lambda p: not p.primary.stopped, lambda p: p.stop())


def exercise_pair(db: Any) -> replicas.Pair:
    """The primary + standby of exercise 11.read_your_writes (made by its setup)."""
    return _PAIRS.require(as_connection(db))


def _setup_ryw(conn: psycopg.Connection) -> None:
    def make() -> replicas.Pair:
        p = replicas.pair("ex11_primary", "ex11_standby")
        p.primary.sql("CREATE TABLE ex_orders (id serial PRIMARY KEY, note text NOT NULL)")
        replicas.wait_for_lsn(p.standby, replicas.current_lsn(p.primary))
        return p

    _PAIRS.replace(conn, make)


def _run_with_lag(p: replicas.Pair, fn: Callable, note: str, lag: float) -> tuple[Any, float, str | None]:
    """Call fn(primary, standby, note) with the standby's replay paused, resumed ``lag`` seconds later."""
    replicas.pause_replay(p.standby)
    timer = threading.Timer(lag, lambda: replicas.resume_replay(p.standby))
    result: dict = {}

    def call() -> None:
        try:
            result["value"] = fn(p.primary, p.standby, note)
        except Exception as exc:  # noqa: BLE001 - reported in one sentence
            result["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"

    t0 = time.perf_counter()
    timer.start()
    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(lag + 20)
    took = time.perf_counter() - t0
    timer.join()
    replicas.resume_replay(p.standby)
    if worker.is_alive():
        return None, took, "your function did not return within 20 s of the standby catching up"
    return result.get("value"), took, result.get("error")


#: The two lags of a check are drawn in these ranges (seconds), so a fixed pause cannot be tuned to them.
RYW_SHORT_LAG, RYW_LONG_LAG = (0.2, 0.4), (2.0, 3.0)
#: How much longer than the lag a right answer may take (connection set-up on a loaded machine): an LSN wait
#: returns a few milliseconds after the standby resumes.
RYW_SLACK = 1.0


def _mentions(answer: Any, word: str) -> bool:
    try:
        return word in inspect.getsource(answer)
    except (OSError, TypeError):
        return False


def _check_ryw(conn: psycopg.Connection, answer: Any) -> CheckResult:
    p = _PAIRS.get(conn)
    if p is None:
        return CheckResult(False, "Run the exercise's setup cell first (ex.setup(db)).")
    rng = random.Random(time.time_ns())
    lags = (round(rng.uniform(*RYW_SHORT_LAG), 2), round(rng.uniform(*RYW_LONG_LAG), 2))
    outcomes = []
    for i, lag in enumerate(lags):
        note = f"check {time.time_ns()} {i}"
        value, took, error = _run_with_lag(p, answer, note, lag)
        if error:
            return CheckResult(False, f"Your function failed: {error}.")
        written = p.primary.scalar("SELECT count(*) FROM ex_orders WHERE note = %s", (note,))
        if written != 1:
            return CheckResult(False, f"The order was written {written} times on the primary, not once: keep the "
                                      "INSERT on the primary exactly as it is.")
        outcomes.append((value == note, took, lag))
    (short_ok, short_took, short_lag), (long_ok, long_took, long_lag) = outcomes
    sleep_hint = ("a fixed pause is a guess about the lag. Wait until the standby has applied the commit (its "
                  "pg_last_wal_replay_lsn() reaches the primary's pg_current_wal_lsn() read after the commit).")
    if short_ok and short_took > short_lag + RYW_SLACK:
        return CheckResult(False, f"The read saw the order, but took {short_took:.1f} s with the standby only "
                                  f"{short_lag:.2f} s behind: " + sleep_hint)
    if short_ok and long_ok:
        if long_took > long_lag + 5:
            return CheckResult(False, "The read saw the order, but only seconds after the standby had it: poll for "
                                      "the commit's LSN instead of sleeping a fixed time.")
        return CheckResult(True, f"The read sees the order whether the standby is {short_lag:.2f} s or "
                                 f"{long_lag:.2f} s behind. Waiting for the commit's LSN keeps the read on the "
                                 "replica; reading from the primary puts it back on the server you wanted to "
                                 "offload.")
    if not short_ok and _mentions(answer, "remote_apply") and not any(
            r["sync_state"] == "sync" for r in replicas.replication(p.primary)):
        return CheckResult(False, "remote_apply waits only for standbys named in synchronous_standby_names, and "
                                  "that is empty on this pair, so the commit waited for nothing "
                                  "(replicas.set_sync(primary, standby.name) names it).")
    if short_ok and not long_ok:
        return CheckResult(False, f"It worked with the standby {short_lag:.2f} s behind and missed the order at "
                                  f"{long_lag:.2f} s: " + sleep_hint)
    return CheckResult(False, "The read ran before the standby had applied the commit, so it missed the order. "
                              "Note the primary's pg_current_wal_lsn() after the commit and poll the standby's "
                              "pg_last_wal_replay_lsn() (received WAL, pg_last_wal_receive_lsn(), is not yet "
                              "applied), or send this read to the primary.")


register(Exercise(
    id="11.read_your_writes",
    title="Make the read after the write consistent",
    prompt=(
        "pair = exercise_pair(db) is a primary and a streaming standby with a table ex_orders (id, note).\n"
        "naive_read_after_write(primary, standby, note) inserts an order on the primary and reads it back from the\n"
        "standby: when the standby lags, it returns None. Write a function with the same three parameters that\n"
        "inserts the order on the primary and returns its note, read so that it is always there, whatever the lag.\n"
        "The check calls it twice, while the standby is a fraction of a second and then a few seconds behind\n"
        "(drawn at random each time)."
    ),
    setup_fn=_setup_ryw,
    checker=_check_ryw,
    answer_kind=type(naive_read_after_write),
    answer_hint="a function f(primary, standby, note) that returns the note",
    lesson="11_scaling",
))


# ---------------------------------------------------------------- exercise 11.route_shard

_CLUSTERS: private.PerDatabase[replicas.ShardCluster] = private.PerDatabase(lambda c: not c.coordinator.stopped,
                                                                             lambda c: c.stop())


def exercise_cluster(db: Any) -> replicas.ShardCluster:
    """The coordinator and shards of exercise 11.route_shard (made by its setup)."""
    return _CLUSTERS.require(as_connection(db))


#: The customers the check asks about (seeded; the exercise cluster has customers 1 to 100).
EX_CUSTOMERS = sorted(random.Random(11).sample(range(1, 101), 20))


def _setup_route(conn: psycopg.Connection) -> None:
    _CLUSTERS.replace(conn, lambda: replicas.shard_cluster(n_orders=2_000, n_customers=100))


def _check_route(conn: psycopg.Connection, answer: Any) -> CheckResult:
    cluster = _CLUSTERS.get(conn)
    if cluster is None:
        return CheckResult(False, "Run the exercise's setup cell first (ex.setup(db)).")
    names = cluster.shard_names()
    n = len(names)
    got, want = [], []
    for cid in EX_CUSTOMERS:
        try:
            value = answer(cluster, cid)
        except Exception as exc:  # noqa: BLE001 - reported in one sentence
            return CheckResult(False, f"Your function failed for customer {cid}: {type(exc).__name__}: "
                                      f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}.")
        got.append(value.name if isinstance(value, private.PrivateServer) else str(value).strip())
        want.append(replicas.shard_of(cluster, cid))
    if "coordinator" in got:
        return CheckResult(False, "The coordinator stores no rows: its partitions are foreign tables. Which shard "
                                  "does it send the query to?")
    bad = sorted({g for g in got if g not in names})
    if bad:
        return CheckResult(False, f"{bad[0]!r} is not a shard: return a shard's name, one of {', '.join(names)}.")
    right = sum(g == w for g, w in zip(got, want))
    if right == len(want):
        return CheckResult(True, f"Right for all {len(want)} customers: a query for one customer goes to that "
                                 "shard alone, and the coordinator (not your code) knows which.")
    if got == [f"shard{cid % n}" for cid in EX_CUSTOMERS]:
        return CheckResult(False, f"customer_id % {n} is not how hash partitioning routes (right for {right} of "
                                  f"{len(want)}): PostgreSQL hashes the key first, then takes the remainder. Ask "
                                  "the coordinator (EXPLAIN VERBOSE shows the Foreign Scan it keeps; "
                                  "tableoid::regclass names the partition a row came from).")
    if len(set(got)) == 1:
        return CheckResult(False, f"Always {got[0]!r}: right for {right} of {len(want)} customers. Each customer's "
                                  "shard depends on the hash of its id.")
    wrong = next(cid for cid, g, w in zip(EX_CUSTOMERS, got, want) if g != w)
    return CheckResult(False, f"Right for {right} of {len(want)} customers; customer {wrong} is not on "
                              f"{got[EX_CUSTOMERS.index(wrong)]}. EXPLAIN VERBOSE on the coordinator shows which "
                              "foreign partition the query keeps.")


register(Exercise(
    id="11.route_shard",
    title="Route one customer's query to its shard",
    prompt=(
        "cluster = exercise_cluster(db) is a coordinator and two shards (cluster.shards), orders hashed by\n"
        "customer_id. Write a function shard_for(cluster, customer_id) that returns the name of the shard holding\n"
        "that customer's orders ('shard0' or 'shard1', or the server itself), found from the coordinator\n"
        "(cluster.coordinator.scalar(...), cluster.explain(...)), not by a formula of your own.\n"
        "The check asks about 20 customers."
    ),
    setup_fn=_setup_route,
    checker=_check_route,
    answer_kind=type(naive_read_after_write),
    answer_hint="a function shard_for(cluster, customer_id) that returns a shard's name such as 'shard0'",
    lesson="11_scaling",
))
