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
* :func:`pool_sizes`, :func:`pool_sizing`, :func:`plot_pool_sizing`: throughput, p95, and wall vs CPU time per query
  as the pool grows past the core count.
* :data:`POOL_SETTINGS`: SQLAlchemy's pool settings next to Prisma's.
* :func:`sort_with` (``COLLATE "C"`` by default), :func:`cache_cold_warm` (disk cold, OS-cache warm, warm),
  :func:`parallel_scan`: work_mem spills, shared_buffers, parallel workers.
"""
from __future__ import annotations

import os
import re
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import pandas as pd
import psycopg

from helpers import private
from helpers.core.errors import WorkbookError

__all__ = ["STRATEGIES", "Result", "bench", "SETUP_LOG", "log_offset", "connection_setup", "compare_connections", "server_backends", "transaction_mode_breaks",
           "prepared_with_tracking", "pool_sizing", "plot_pool_sizing", "pool_sizes",
           "POOL_SETTINGS", "make_work_table", "sqlalchemy_engine", "cores", "SORT_ROWS", "make_sort_table", "sort_with",
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

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def p95(self) -> float:
        return statistics.quantiles(self.latencies, n=20)[18] if len(self.latencies) >= 20 else max(self.latencies)

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies)


def _backend_cpu(pids: list[int]) -> float:
    """CPU seconds used so far by these server processes: /proc/PID/schedstat (nanoseconds) on Linux, else psutil."""
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/schedstat") as fh:
                total += int(fh.read().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            import psutil

            try:
                t = psutil.Process(pid).cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
    return total


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
            cpu0 = _backend_cpu(pids)

            def one() -> None:
                with pool.connection() as conn:
                    t = time.perf_counter()
                    conn.execute(query).fetchall()
                    return time.perf_counter() - t
            secs, lat, err, held = _run_clients(clients, per_client, one)
            cpu = _backend_cpu(pids) - cpu0
        return Result(strategy, clients, clients * per_client, secs, lat, err, held, cpu)
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
    """Throughput and latency of ``clients`` threads sharing a ``psycopg_pool`` pool of each size."""
    make_work_table(server)
    rows = []
    for size in sizes:
        r = bench("psycopg_pool", server, clients=clients, per_client=per_client, pool_size=size, query=query,
                  serial=True)
        rows.append({"pool size": size, "requests/s": r.rate, "p50 ms": r.p50 * 1000, "p95 ms": r.p95 * 1000,
                     "query ms": statistics.median(r.held) * 1000,
                     "CPU ms per query": r.cpu / r.requests * 1000, "errors": r.errors})
    return pd.DataFrame(rows).set_index("pool size")


def plot_pool_sizing(df: pd.DataFrame, ncores: int, clients: int | None = None):
    import matplotlib.pyplot as plt

    fig, ax1 = plt.subplots(figsize=(7, 3.2))
    ax1.plot(df.index, df["requests/s"], "o-", color="tab:blue", label="requests/s")
    ax1.set_xscale("log", base=2)
    ax1.set_xticks(list(df.index), [str(i) for i in df.index])
    ax1.set_xlabel("pool size (server connections)")
    ax1.set_ylabel("requests/s", color="tab:blue")
    ax1.set_ylim(bottom=0)
    ax2 = ax1.twinx()
    ax2.plot(df.index, df["p95 ms"], "s--", color="tab:red", label="p95 latency (with the wait for a connection)")
    ax2.plot(df.index, df["query ms"], "^:", color="tab:orange", label="median time of the query itself")
    ax2.set_ylabel("ms", color="tab:red")
    ax2.legend(loc="upper center", fontsize=8)
    ax2.set_ylim(bottom=0)
    ax1.axvline(ncores, color="grey", lw=1, ls=":")
    ax1.text(ncores, 0, f" {ncores} cores", color="grey", va="bottom")
    ax1.set_title(f"Throughput and p95 latency, {clients or max(df.index)} concurrent clients")
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

    ``collate="C"`` (the default) compares bytes, so the time is the sort's own; ``collate=None`` uses the
    database's collation (C.UTF-8 from libc on the private servers), where every comparison calls strcoll()."""
    order = f'k COLLATE "{collate}"' if collate else "k"
    with server.connect() as conn, server.connect() as observer:
        conn.execute(f"SET work_mem = '{work_mem}'")
        conn.execute("SET max_parallel_workers_per_gather = 0")
        before = temp_files(observer)
        plan = "\n".join(r[0] for r in conn.execute(
            f"EXPLAIN (ANALYZE, BUFFERS, TIMING OFF, COSTS OFF) SELECT id FROM sort_me ORDER BY {order}"))
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            conn.execute(f"SELECT id FROM sort_me ORDER BY {order} OFFSET 1000000000").fetchall()
            times.append(time.perf_counter() - t)
        conn.execute("SELECT pg_stat_force_next_flush()")
        conn.execute("SELECT 1")  # the flush happens at the end of a statement
        deadline = time.monotonic() + 10
        after = temp_files(observer)
        spilled = "external merge" in plan
        while spilled and after[0] < before[0] + repeat + 1 and time.monotonic() < deadline:
            time.sleep(0.05)  # stats reach shared memory when the backend reports them: poll, with a timeout
            after = temp_files(observer)
    method = next((ln.strip() for ln in plan.splitlines() if "Sort Method" in ln), "")
    return {"work_mem": work_mem, "sort method": method.split("Sort Method:")[1].split()[0] + (
        " merge" if "external merge" in method else ""), "external merge": spilled,
        "seconds": min(times), "temp files": after[0] - before[0], "temp bytes": after[1] - before[1],
        "plan": plan}


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

# ---- Part B: replicas and sharding (spliced in by the lead) ----
