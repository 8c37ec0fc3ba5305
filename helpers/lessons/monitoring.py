"""Notebook 09 (monitoring): a small web app with planted problems, and the server's own numbers that find them.

The app (:class:`App`) serves four kinds of request on the music store, from several client threads:

============== ========================================================================== ======================
request        what it does                                                               planted problem
============== ========================================================================== ======================
``recent``     a customer's 20 latest plays with each track's name (ORM)                  no index on
                                                                                          ``plays.customer_id``;
                                                                                          N+1 on ``play.track``
``record``     INSERT one play                                                            maintains an index
                                                                                          nobody reads
``rate``       UPDATE one review's rating                                                 (dead tuples)
``report``     every customer's longest play (``DISTINCT ON``)                            sorts past work_mem
============== ========================================================================== ======================

Each request is timed and its statements are counted with SQLAlchemy's cursor events (the counterpart of Prisma's
``$on('query')``); statements slower than a threshold go to a slow-query log. :meth:`App.run` returns a
:class:`Workload` with p50/p95 latency and statements per request. The lesson then finds each problem only from
``pg_stat_statements`` and the ``pg_stat_*`` views, filtered to the lesson database's own ``dbid``
(the servers are shared), and :func:`apply_fixes` repairs them.
"""
from __future__ import annotations

import contextlib
import numbers
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import psycopg
import psycopg.sql
from sqlalchemy import create_engine, event, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, joinedload

from helpers.core.errors import WorkbookError
from helpers.data.models import Play
from helpers.db import connect, session_options
from helpers.exercises import CheckResult, Exercise, register
from helpers.fmt import fmt_time

__all__ = [
    "UNUSED_INDEX", "FIX_INDEX", "MIX", "Availability", "stat_statements", "plant", "App", "Workload",
    "dbid", "temp_files", "reset_own_statements", "top_statements", "statement_of", "apply_fixes", "lock_wait_demo",
    "auto_explain_plan", "bloat_phases", "checkpoint_figures", "plot_latency", "plot_top",
]

#: The index nobody reads (planted by :func:`plant`), and the one the fix adds.
UNUSED_INDEX = "plays_device_source_idx"
FIX_INDEX = "plays_customer_id_played_at_idx"

#: Requests of each kind in one run of the workload (the order is shuffled with a seed).
MIX = {"recent": 150, "record": 60, "rate": 89, "report": 1}

RECENT_LIMIT = 20
REPORT_SLOW = ("SELECT DISTINCT ON (customer_id) customer_id, ms_played FROM plays "
               "ORDER BY customer_id, ms_played DESC")
REPORT_FIXED = "SELECT customer_id, max(ms_played) AS ms_played FROM plays GROUP BY customer_id ORDER BY customer_id"
RECORD = ("INSERT INTO plays (customer_id, track_id, played_at, ms_played, device, source) "
          "VALUES (:customer_id, :track_id, now(), :ms, 'web', 'search')")
RATE = "UPDATE reviews SET rating = :rating WHERE review_id = :review_id"

#: Text that marks the monitoring queries themselves (left out of the workload's statistics).
_OWN = ("pg_stat", "pg_database")


# ------------------------------------------------------------------------------------ is it there?

@dataclass(frozen=True)
class Availability:
    """Whether ``pg_stat_statements`` can be read in the lesson database, and if not, why in one sentence."""

    ok: bool
    message: str

    def __bool__(self) -> bool:
        return self.ok


def stat_statements(conn: Any) -> Availability:
    """Create the ``pg_stat_statements`` extension in the lesson database if possible and say whether it works.

    Three things must hold: the server ships the extension, the library is in ``shared_preload_libraries``
    (a server setting: it needs a restart), and the extension exists in this database (``CREATE EXTENSION``).
    """
    conn = getattr(conn, "conn", conn)
    available = conn.execute(
        "SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_stat_statements'").fetchone()[0]
    if not available:
        return Availability(False, "This server does not ship pg_stat_statements (a contrib module): install the "
                                   "server's contrib package; the sections that need it are skipped.")
    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    except psycopg.Error as exc:
        return Availability(False, "Could not create the pg_stat_statements extension in the lesson database "
                                   f"({(exc.diag.message_primary or str(exc)).strip()}); ask the server's owner.")
    try:
        conn.execute("SELECT 1 FROM pg_stat_statements LIMIT 1").fetchall()
    except psycopg.errors.ObjectNotInPrerequisiteState:
        return Availability(False, "pg_stat_statements is installed but not loaded: add it to "
                                   "shared_preload_libraries in postgresql.conf and restart the server; "
                                   "the sections that need it are skipped.")
    return Availability(True, "pg_stat_statements is loaded and installed in the lesson database.")


def dbid(conn: Any) -> int:
    """The lesson database's oid: the ``dbid`` every statistics query below filters on."""
    conn = getattr(conn, "conn", conn)
    return conn.execute("SELECT oid FROM pg_database WHERE datname = current_database()").fetchone()[0]


def temp_files(conn: Any) -> int:
    """Temporary files this database's queries have written (``pg_stat_database.temp_files``, cumulative).

    Unlike ``pg_stat_statements``, whose least used entries are evicted when it holds ``pg_stat_statements.max``
    statements (busy shared servers), these per-database counters keep everything since the last reset.
    """
    conn = getattr(conn, "conn", conn)
    return conn.execute("SELECT temp_files FROM pg_stat_database WHERE datname = current_database()").fetchone()[0]


def reset_own_statements(conn: Any) -> None:
    """Forget the lesson database's own ``pg_stat_statements`` entries, and only those.

    ``pg_stat_statements_reset(userid, dbid, queryid)`` (PostgreSQL 12+; 17 added a fourth argument,
    ``minmax_only``, with a default): 0 means "any", so ``(0, dbid, 0)`` resets one database. Never call it
    without arguments on a shared server: that wipes everyone's statistics.
    """
    conn = getattr(conn, "conn", conn)
    conn.execute("SELECT pg_stat_statements_reset(0, %s, 0)", (dbid(conn),))


# ------------------------------------------------------------------------------------ the planted state

def plant(conn: Any) -> None:
    """The starting state: an index on ``plays (device, source)`` that no request reads (safe to run again)."""
    conn = getattr(conn, "conn", conn)
    conn.execute(f"DROP INDEX IF EXISTS {FIX_INDEX}")
    conn.execute(f"CREATE INDEX IF NOT EXISTS {UNUSED_INDEX} ON plays (device, source)")
    conn.execute("ANALYZE plays")


def apply_fixes(conn: Any) -> list[str]:
    """The three fixes a DBA would ship (the fourth, the N+1, is in the app's code: ``App(fixed=True)``)."""
    conn = getattr(conn, "conn", conn)
    done = [
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {FIX_INDEX} ON plays (customer_id, played_at, play_id)",
        f"DROP INDEX CONCURRENTLY IF EXISTS {UNUSED_INDEX}",
        "ANALYZE plays",
    ]
    for statement in done:
        conn.execute(statement)
    valid = conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", (FIX_INDEX,)).fetchone()
    if not valid or not valid[0]:
        raise WorkbookError(f"{FIX_INDEX} exists but is INVALID (an earlier CREATE INDEX CONCURRENTLY failed): "
                            f"DROP INDEX {FIX_INDEX} and run this cell again.")
    return done


# ------------------------------------------------------------------------------------ the app

@dataclass
class Request:
    kind: str
    args: dict
    seconds: float = 0.0
    statements: int = 0


@dataclass
class Workload:
    """One run of the app: every request with its time and statement count, and the slow-query log."""

    requests: list[Request]
    clients: int
    slow_log: list[tuple[float, str]] = field(default_factory=list)
    threshold_s: float = 0.0

    def latencies(self, kind: str | None = None) -> list[float]:
        return [r.seconds for r in self.requests if kind is None or r.kind == kind]

    def percentile(self, p: float, kind: str | None = None) -> float:
        import numpy as np

        return float(np.percentile(self.latencies(kind), p))

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p95(self) -> float:
        return self.percentile(95)

    @property
    def statements(self) -> int:
        return sum(r.statements for r in self.requests)

    @property
    def per_request(self) -> float:
        return self.statements / len(self.requests)

    def statements_by_kind(self) -> dict[str, int]:
        out = {kind: 0 for kind in MIX}  # a fixed order, whatever order the requests came in
        for r in self.requests:
            out[r.kind] = out.get(r.kind, 0) + r.statements
        return {k: n for k, n in out.items() if n or any(r.kind == k for r in self.requests)}

    def summary(self) -> str:
        kinds = ", ".join(f"{k} {n}" for k, n in self.statements_by_kind().items())
        return (f"{len(self.requests)} requests from {self.clients} clients: {self.statements} statements "
                f"({self.per_request:.2f} per request; {kinds}); p50 {fmt_time(self.p50)}, p95 {fmt_time(self.p95)}")

    def slow_log_text(self, limit: int = 3) -> str:
        lines = [f"{len(self.slow_log)} statements slower than {fmt_time(self.threshold_s)} (client-side time):"]
        for seconds, statement in sorted(self.slow_log, reverse=True)[:limit]:
            lines.append(f"  {fmt_time(seconds)}  {' '.join(statement.split())[:100]}")
        return "\n".join(lines)


class App:
    """The music store's web app, reduced to four request handlers (see the module docstring).

    ``fixed=True`` switches the code-side fixes on: the recent-plays page loads the tracks with a join
    (no N+1) and the report asks for ``max()`` per customer instead of sorting every play.
    """

    def __init__(self, lesson: Any, *, fixed: bool = False, clients: int = 2, slow_ms: float = 20.0) -> None:
        self.lesson = lesson
        self.fixed = fixed
        self.clients = clients
        self.threshold_s = slow_ms / 1000.0
        options = " ".join(filter(None, [lesson.target.kwargs.get("options"), session_options(lesson.timeout)]))
        self.engine = create_engine(
            lesson.url, isolation_level="AUTOCOMMIT", pool_size=clients, max_overflow=0,
            connect_args={"options": options, "application_name": "pdw:09_monitoring:app"})
        self._local = threading.local()
        self._slow: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        event.listen(self.engine, "before_cursor_execute", self._before)
        event.listen(self.engine, "after_cursor_execute", self._after)

    # -- query logging (the counterpart of Prisma's $on('query')) --
    def _before(self, conn, cursor, statement, parameters, context, executemany) -> None:
        conn.info["t0"] = time.perf_counter()
        if getattr(self._local, "counting", False):
            self._local.count += 1

    def _after(self, conn, cursor, statement, parameters, context, executemany) -> None:
        seconds = time.perf_counter() - conn.info.pop("t0", time.perf_counter())
        if seconds >= self.threshold_s:
            with self._lock:
                self._slow.append((seconds, statement))

    # -- the request handlers --
    def recent(self, session: Session, customer_id: int) -> list[tuple[Any, str]]:
        stmt = (select(Play).where(Play.customer_id == customer_id)
                .order_by(Play.played_at.desc(), Play.play_id.desc()).limit(RECENT_LIMIT))
        if self.fixed:
            stmt = stmt.options(joinedload(Play.track, innerjoin=True))
        return [(p.played_at, p.track.name) for p in session.scalars(stmt)]

    def record(self, session: Session, customer_id: int, track_id: int, ms: int) -> None:
        session.execute(text(RECORD), {"customer_id": customer_id, "track_id": track_id, "ms": ms})

    def rate(self, session: Session, review_id: int, rating: int) -> None:
        session.execute(text(RATE), {"review_id": review_id, "rating": rating})

    def report(self, session: Session) -> int:
        return len(session.execute(text(REPORT_FIXED if self.fixed else REPORT_SLOW)).all())

    # -- the workload --
    def plan(self, seed: int = 9, mix: dict[str, int] | None = None) -> list[Request]:
        """The requests of one run, drawn from the data with a seed (the same list for the same data)."""
        mix = mix or MIX
        conn = self.lesson.conn
        customers = [r[0] for r in conn.execute("SELECT customer_id FROM customer ORDER BY customer_id")]
        tracks = [r[0] for r in conn.execute("SELECT track_id FROM track ORDER BY track_id")]
        reviews = [r[0] for r in conn.execute("SELECT review_id FROM reviews ORDER BY review_id")]
        rng = random.Random(seed)
        readers, writers = customers[0::2], customers[1::2]  # new plays never change a page that is read
        out: list[Request] = []
        out += [Request("recent", {"customer_id": rng.choice(readers)}) for _ in range(mix.get("recent", 0))]
        out += [Request("record", {"customer_id": rng.choice(writers), "track_id": rng.choice(tracks),
                                   "ms": rng.randint(30_000, 300_000)}) for _ in range(mix.get("record", 0))]
        out += [Request("rate", {"review_id": rng.choice(reviews), "rating": rng.randint(1, 5)})
                for _ in range(mix.get("rate", 0))]
        out += [Request("report", {}) for _ in range(mix.get("report", 0))]
        rng.shuffle(out)
        return out

    def _serve(self, requests: list[Request], tick: Callable[[], None]) -> None:
        with self.engine.connect() as conn:
            try:
                for req in requests:
                    handler = getattr(self, req.kind)
                    self._local.count, self._local.counting = 0, True
                    t0 = time.perf_counter()
                    try:
                        with Session(bind=conn) as session:
                            handler(session, **req.args)
                    finally:
                        req.seconds = time.perf_counter() - t0
                        req.statements, self._local.counting = self._local.count, False
                    tick()
            finally:
                # statistics a backend collects reach the pg_stat_* views when it flushes them (at most once a
                # second while busy); PostgreSQL 15+ can be asked to flush at the end of the next statement
                with contextlib.suppress(Exception):
                    conn.exec_driver_sql("SELECT pg_stat_force_next_flush()")

    def run(self, requests: list[Request] | None = None, *, progress: bool = True) -> Workload:
        """Serve the requests from ``clients`` threads (each with its own connection), in order per client."""
        requests = requests if requests is not None else self.plan()
        self._slow = []
        parts = [requests[i::self.clients] for i in range(self.clients)]
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(requests), desc="requests", leave=False)
        lock = threading.Lock()

        def tick() -> None:
            if bar is not None:
                with lock:
                    bar.update(1)

        try:
            with ThreadPoolExecutor(self.clients) as pool:
                for f in [pool.submit(self._serve, part, tick) for part in parts]:
                    f.result()
        except (psycopg.Error, DBAPIError) as exc:
            orig = getattr(exc, "orig", None) or exc
            raise WorkbookError(f"A request of the app failed: {str(orig).strip().splitlines()[0]}") from None
        finally:
            if bar is not None:
                bar.close()
        return Workload(requests, self.clients, list(self._slow), self.threshold_s)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "App":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def expected_statements(conn: Any, requests: list[Request], *, fixed: bool) -> int:
    """What the app must send for these requests, from the data alone (the N+1 loads each distinct track once).

    One query over plays (run it before resetting the statistics: it reads the whole table once).
    """
    if fixed:
        return len(requests)  # one statement per request, whatever the data
    conn = getattr(conn, "conn", conn)
    customers = sorted({r.args["customer_id"] for r in requests if r.kind == "recent"})
    distinct = dict(conn.execute(
        "SELECT customer_id, count(DISTINCT track_id) FROM ("
        " SELECT customer_id, track_id, row_number() OVER (PARTITION BY customer_id"
        "  ORDER BY played_at DESC, play_id DESC) AS n FROM plays WHERE customer_id = ANY(%s)) AS pages "
        "WHERE n <= %s GROUP BY customer_id", (customers, RECENT_LIMIT)).fetchall())
    total = 0
    for req in requests:
        if req.kind == "recent":
            total += 1 + distinct.get(req.args["customer_id"], 0)
        else:
            total += 1
    return total


# ------------------------------------------------------------------------------------ reading the statistics

def top_statements(conn: Any, order: str = "total", n: int = 5) -> list[dict]:
    """The lesson database's statements from ``pg_stat_statements``, top ``n`` by ``total``, ``mean`` or ``calls``.

    Filtered on this database's ``dbid`` and without the monitoring queries themselves. Rows with the same text are
    added up (``entries`` says how many there were, ``queryids`` lists them; ``queryid`` is the smallest, a
    representative). One text can have several rows because ``queryid`` is a hash of the parsed statement that
    includes each parameter's type, and psycopg sends a Python ``int`` as the smallest type that holds it: a parameter
    whose values straddle 32,767 (customer and review ids at the workshop scale; ``ms_played`` from 30,000 up at any
    scale) gives its statement a row per combination of types, whatever casts the SQL text has. Rows of one text run by
    another role, or nested in a function (``pg_stat_statements.track = all``), are added up too.
    """
    key = {"total": "total_exec_time", "mean": "mean_exec_time", "calls": "calls", "temp": "temp_blks_written"}[order]
    conn = getattr(conn, "conn", conn)
    cur = conn.execute(
        "SELECT min(queryid) AS queryid, array_agg(queryid ORDER BY queryid) AS queryids, count(*)::int AS entries, "
        "sum(calls)::bigint AS calls, "
        "sum(total_exec_time) AS total_exec_time, "
        "coalesce(sum(total_exec_time) / nullif(sum(calls), 0), 0) AS mean_exec_time, "  # planned, never run: 0
        "sum(rows)::bigint AS rows, sum(temp_blks_written)::bigint AS temp_blks_written, "
        "sum(shared_blks_hit)::bigint AS shared_blks_hit, sum(shared_blks_read)::bigint AS shared_blks_read, query "
        "FROM pg_stat_statements WHERE dbid = %s AND query NOT LIKE ALL (%s) "
        f"GROUP BY query ORDER BY {key} DESC, queryid LIMIT %s",
        (dbid(conn), [f"%{o}%" for o in _OWN], n))
    cols = [d.name for d in cur.description]
    return [dict(zip(cols, row)) for row in cur.fetchall()]


def statement_of(rows: list[dict], kind: str) -> dict | None:
    """Recognise the app's statements in ``pg_stat_statements`` rows by their normalised text."""
    for r in rows:
        q = " ".join(r["query"].split())
        if kind == "recent" and q.startswith("SELECT plays.play_id") and "WHERE plays.customer_id = $1" in q:
            return r
        if kind == "n_plus_one" and "FROM track" in q and "WHERE track.track_id = $1" in q:
            return r
        if kind == "report" and ("DISTINCT ON (customer_id)" in q or "max(ms_played)" in q):
            return r
        if kind == "record" and q.startswith("INSERT INTO plays"):
            return r
        if kind == "rate" and q.startswith("UPDATE reviews"):
            return r
    return None


def label(query: str, width: int = 70) -> str:
    """A short name for a normalised statement (for tables and charts)."""
    q = " ".join(query.split())
    if q.startswith("SELECT plays.play_id") and "JOIN track" not in q:
        return "SELECT plays WHERE customer_id = $1 …"
    if "FROM track" in q and "WHERE track.track_id = $1" in q:
        return "SELECT track WHERE track_id = $1  (lazy load)"
    if q.startswith("SELECT plays.play_id") and "JOIN track" in q:
        return "SELECT plays JOIN track WHERE customer_id = $1 …"
    return q if len(q) <= width else q[: width - 1] + "…"


def print_top(rows: list[dict]) -> None:
    """Print rows of :func:`top_statements` as text (times through fmt_time, so the sanitizer masks them)."""
    for i, r in enumerate(rows, 1):
        rows_per_call = r["rows"] / r["calls"] if r["calls"] else 0
        print(f"{i}. {label(r['query'])}\n   calls {r['calls']:,}, total {fmt_time(r['total_exec_time'] / 1000)}, "
              f"mean {fmt_time(r['mean_exec_time'] / 1000)}, rows/call {rows_per_call:.2f}, "
              f"temp blocks written {r['temp_blks_written']:,}")


# ------------------------------------------------------------------------------------ a session that waits

@dataclass
class LockWait:
    """What pg_stat_activity and pg_locks showed while one session waited for another's row lock."""

    holder_pid: int
    waiter_pid: int
    activity: list[dict]
    blocking: list[int]
    not_granted: list[tuple[str, str]]
    waited_s: float
    waiter_finished: bool


def lock_wait_demo(lesson: Any, *, timeout_s: float = 20.0) -> LockWait:
    """Session A updates a review and keeps its transaction open; B updates the same row and waits.

    The waiting state is established by polling ``pg_stat_activity`` (never by sleeping); only then is it read.
    A commits afterwards and B finishes. Both sessions are closed whatever happens.
    """
    review_id = lesson.scalar("SELECT min(review_id) FROM reviews")
    holder = connect(lesson.dbname, tgt=lesson.target, app="pdw:09_monitoring:A")
    waiter = connect(lesson.dbname, tgt=lesson.target, app="pdw:09_monitoring:B")
    result: dict[str, Any] = {}
    thread = None
    try:
        holder.execute("SET lock_timeout = '30s'")
        waiter.execute(f"SET lock_timeout = '{int(timeout_s * 1000)}ms'")
        holder_pid, waiter_pid = holder.info.backend_pid, waiter.info.backend_pid
        holder.execute("BEGIN")
        holder.execute("UPDATE reviews SET rating = rating WHERE review_id = %s", (review_id,))

        def wait() -> None:
            t0 = time.perf_counter()
            try:
                waiter.execute("UPDATE reviews SET rating = rating WHERE review_id = %s", (review_id,))
                result["ok"] = True
            except psycopg.Error as exc:
                result["error"] = str(exc).splitlines()[0]
            result["s"] = time.perf_counter() - t0

        thread = threading.Thread(target=wait, daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout_s
        while True:  # poll until B is seen waiting for a lock
            row = lesson.conn.execute(
                "SELECT wait_event_type, pg_blocking_pids(pid) FROM pg_stat_activity WHERE pid = %s",
                (waiter_pid,)).fetchone()
            if row and row[0] == "Lock" and holder_pid in row[1]:
                blocking = list(row[1])
                break
            if time.monotonic() > deadline or "error" in result or "ok" in result:
                raise WorkbookError(f"Session B was not seen waiting for A's lock within {timeout_s:.0f} s.")
            time.sleep(0.01)  # a poll interval, not a wait for the state: the loop checks it
        cur = lesson.conn.execute(
            "SELECT pid, application_name, state, wait_event_type, wait_event, "
            "left(regexp_replace(query, '\\s+', ' ', 'g'), 60) AS query, "
            "now() - xact_start AS xact_age FROM pg_stat_activity "
            "WHERE pid IN (%s, %s) ORDER BY application_name", (holder_pid, waiter_pid))
        cols = [d.name for d in cur.description]
        activity = [dict(zip(cols, r)) for r in cur.fetchall()]
        not_granted = [tuple(r) for r in lesson.conn.execute(
            "SELECT locktype, mode FROM pg_locks WHERE pid = %s AND NOT granted", (waiter_pid,)).fetchall()]
        holder.execute("COMMIT")
        thread.join(timeout_s)
        return LockWait(holder_pid, waiter_pid, activity, blocking, not_granted, result.get("s", float("nan")),
                        bool(result.get("ok")))
    finally:
        with contextlib.suppress(Exception):
            holder.close()
        if thread is not None:
            thread.join(timeout_s)
        with contextlib.suppress(Exception):
            waiter.close()


# ------------------------------------------------------------------------------------ auto_explain

def auto_explain_plan(lesson: Any, query: str, params: dict | None = None, *, min_ms: int = 1) -> str:
    """Run ``query`` in a fresh session with auto_explain sending its plan to the client; return the plan text.

    On PostgreSQL where ``auto_explain`` is not in ``shared_preload_libraries`` (the system 15 here), a superuser
    loads it into the session with ``LOAD 'auto_explain'``. ``auto_explain.log_level`` (PostgreSQL 12+) set to
    ``notice`` sends the plan to the client (and to the server log only if ``log_min_messages`` is notice or lower);
    its settings are superuser-only unless granted (``GRANT SET ON PARAMETER``, PostgreSQL 15+).
    """
    conn = connect(lesson.dbname, tgt=lesson.target, app="pdw:09_monitoring:explain")
    notices: list[str] = []
    try:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        try:
            preloaded = "auto_explain" in conn.execute("SHOW shared_preload_libraries").fetchone()[0]
            if not preloaded:
                conn.execute("LOAD 'auto_explain'")
            conn.execute("SET client_min_messages = notice")
            for name, value in (("log_min_duration", f"{min_ms}ms"), ("log_analyze", "on"),
                                ("log_buffers", "on"), ("log_level", "notice")):
                conn.execute(f"SET auto_explain.{name} = '{value}'")
        except psycopg.Error as exc:
            raise WorkbookError("auto_explain is not usable here (it needs a superuser or a server that preloads "
                                f"it): {(exc.diag.message_primary or str(exc)).strip()}") from None
        conn.execute(query, params or None).fetchall()
        plans = [n for n in notices if "Query Text" in n or "duration" in n]
        return plans[-1] if plans else ""
    finally:
        conn.close()


# ------------------------------------------------------------------------------------ bloat

def bloat_phases(lesson: Any, table: str = "reviews") -> list[dict] | None:
    """``pgstattuple`` on ``table`` as loaded, after an UPDATE of every row, after VACUUM, after VACUUM FULL.

    Returns None (and the notebook says so) where the server does not ship the pgstattuple extension.
    Changes only the lesson database's own table.
    """
    conn = lesson.conn
    if not conn.execute("SELECT count(*) FROM pg_available_extensions WHERE name = 'pgstattuple'").fetchone()[0]:
        return None
    conn.execute("CREATE EXTENSION IF NOT EXISTS pgstattuple")
    ident = psycopg.sql.Identifier(table)
    out = []

    def measure(phase: str) -> None:
        row = conn.execute(
            "SELECT table_len / 8192, tuple_count, dead_tuple_count, dead_tuple_percent, free_percent "
            "FROM pgstattuple(%s::regclass)", (table,)).fetchone()
        out.append({"phase": phase, "pages": int(row[0]), "live": row[1], "dead": row[2],
                    "dead_pct": float(row[3]), "free_pct": float(row[4])})

    conn.execute(psycopg.sql.SQL("VACUUM {}").format(ident))
    measure("as loaded (vacuumed)")
    conn.execute(psycopg.sql.SQL("UPDATE {} SET rating = rating").format(ident))
    measure("after UPDATE of every row")
    conn.execute(psycopg.sql.SQL("VACUUM {}").format(ident))
    measure("after VACUUM")
    conn.execute(psycopg.sql.SQL("VACUUM FULL {}").format(ident))
    measure("after VACUUM FULL")
    return out


# ------------------------------------------------------------------------------------ server-wide figures

def checkpoint_figures(conn: Any) -> dict:
    """Checkpoints requested vs timed and buffers written, from the view the server version keeps them in.

    PostgreSQL 17 moved the checkpoint columns from ``pg_stat_bgwriter`` to the new ``pg_stat_checkpointer``
    (``num_timed``, ``num_requested``, ``buffers_written``); read-only, server-wide, and never reset here.
    """
    conn = getattr(conn, "conn", conn)
    if conn.info.server_version >= 170000:
        row = conn.execute("SELECT num_timed, num_requested, buffers_written FROM pg_stat_checkpointer").fetchone()
        source = "pg_stat_checkpointer"
    else:
        row = conn.execute("SELECT checkpoints_timed, checkpoints_req, buffers_checkpoint "
                           "FROM pg_stat_bgwriter").fetchone()
        source = "pg_stat_bgwriter"
    return {"view": source, "timed": row[0], "requested": row[1], "buffers_written": row[2]}


# ------------------------------------------------------------------------------------ pictures (display only)

def plot_latency(before: Workload, after: Workload) -> Any:
    """Display only: the request latency distribution before and after the fixes (log scale)."""
    import numpy as np

    from helpers.plans import png_figure

    fig = png_figure(figsize=(7, 3.6))
    ax = fig.subplots()
    lo = min(min(before.latencies()), min(after.latencies())) * 1000
    hi = max(max(before.latencies()), max(after.latencies())) * 1000
    bins = np.logspace(np.log10(max(lo, 0.01)), np.log10(hi), 40)
    for w, name, color in ((before, "before", "tab:red"), (after, "after", "tab:green")):
        ms = np.array(w.latencies()) * 1000
        ax.hist(ms, bins=bins, alpha=0.55, color=color, label=f"{name} (p50 / p95 marked)")
        for p, style in ((50, "-"), (95, "--")):
            ax.axvline(np.percentile(ms, p), color=color, linestyle=style, linewidth=1.2)
    ax.set_xscale("log")
    ax.set_xlabel("request latency (ms, log scale)")
    ax.set_ylabel("requests")
    ax.set_title("The same workload before and after the fixes")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_top(before: list[dict], after: list[dict]) -> Any:
    """Display only: total execution time of the top statements, before vs after (log scale, a small dashboard)."""
    import numpy as np

    from helpers.plans import png_figure

    names: list[str] = []
    for r in before + after:
        name = label(r["query"], 44).replace("$", r"\$")
        if name not in names:
            names.append(name)
    total = {("before", label(r["query"], 44).replace("$", r"\$")): r["total_exec_time"] for r in before}
    total.update({("after", label(r["query"], 44).replace("$", r"\$")): r["total_exec_time"] for r in after})
    fig = png_figure(figsize=(9, 4.5))  # a fixed size: nbval compares the figure's text form
    ax = fig.subplots()
    y = np.arange(len(names))[::-1]
    for offset, which, color in ((0.2, "before", "tab:red"), (-0.2, "after", "tab:green")):
        values = [total.get((which, n), 0) for n in names]
        ax.barh(y + offset, values, height=0.4, color=color, label=f"{which} (top 5)")
    ax.set_yticks(y, names, fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("total execution time (ms, log scale); no bar: not in that top 5")
    ax.set_title("pg_stat_statements: top 5 by total time, before and after")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------ exercises

def _workload_ran(conn: psycopg.Connection) -> bool:
    return statement_of(top_statements(conn, "calls", 50), "recent") is not None


def setup_state(conn: psycopg.Connection) -> None:
    """The exercises' starting state: the planted index and one run of the unfixed app (if none ran yet)."""
    if not stat_statements(conn):
        return  # the check says what is missing
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (UNUSED_INDEX,)).fetchone()[0]
    if not exists:
        plant(conn)
    if not _workload_ran(conn):
        from types import SimpleNamespace

        from helpers import db as dbmod

        tgt = dbmod.target()
        les = SimpleNamespace(conn=conn, url=tgt.sqlalchemy_url(conn.info.dbname), target=tgt,
                              timeout=dbmod.settings.statement_timeout(), dbname=conn.info.dbname)
        with App(les) as app:
            app.run(progress=False)


def _check_fix_first(conn: psycopg.Connection, answer: Any) -> CheckResult:
    rows = top_statements(conn, "total", 50)
    if not rows:
        return CheckResult(False, "pg_stat_statements has no entries for this database yet: run the workload cell.")
    top = rows[0]
    mine = next((r for r in rows if int(answer) in r["queryids"]), None)  # any row of a statement split by types
    if mine is None:
        return CheckResult(False, f"No statement of this database has queryid {int(answer)}: copy the number from "
                                  "the queryid column of pg_stat_statements (filtered by this database's dbid).")
    if mine["queryid"] == top["queryid"]:
        return CheckResult(True, f"It has the highest total time ({fmt_time(top['total_exec_time'] / 1000)} over "
                                 f"{top['calls']:,} calls): fixing it saves the most server time.")
    by_calls = top_statements(conn, "calls", 1)[0]
    by_mean = top_statements(conn, "mean", 1)[0]
    if mine["queryid"] == by_calls["queryid"]:
        return CheckResult(False, f"That is the statement called most often ({mine['calls']:,} calls), but each call "
                                  f"is cheap: its total is {fmt_time(mine['total_exec_time'] / 1000)}. Calls alone "
                                  "do not say what costs the most; sort by total_exec_time (calls × mean).")
    if mine["queryid"] == by_mean["queryid"]:
        return CheckResult(False, f"That one is the slowest per call (mean {fmt_time(mine['mean_exec_time'] / 1000)}) "
                                  f"but ran only {mine['calls']:,} time{'s' if mine['calls'] != 1 else ''}. A rare slow report costs less in total than "
                                  "a moderately slow query on every page view: sort by total_exec_time.")
    return CheckResult(False, f"That statement's total is {fmt_time(mine['total_exec_time'] / 1000)}; another one "
                              "costs more. Order pg_stat_statements by total_exec_time DESC.")


register(Exercise(
    id="09.fix_first",
    title="Which statement would you fix first?",
    prompt=("From pg_stat_statements (only this database: WHERE dbid = ...), find the statement that cost the server "
            "the most time during the workload, and answer with its queryid (an integer). A statement can have several "
            "rows, one per combination of parameter types: add up the rows of one query text; any of its queryids "
            "is accepted."),
    setup_fn=setup_state,
    checker=_check_fix_first,
    answer_kind=numbers.Integral,
    answer_hint="a queryid from pg_stat_statements (an integer)",
    lesson="09_monitoring",
))


def _constraint_of(conn: psycopg.Connection, index: str) -> str | None:
    row = conn.execute(
        "SELECT c.conname, c.contype FROM pg_constraint c JOIN pg_class i ON i.oid = c.conindid "
        "WHERE i.relname = %s AND i.relnamespace = 'public'::regnamespace", (index,)).fetchone()
    if row:
        kind = {"p": "primary key", "u": "unique constraint", "x": "exclusion constraint"}.get(row[1], "constraint")
        return f"the {kind} {row[0]}"
    uniq = conn.execute("SELECT indisunique FROM pg_index WHERE indexrelid = to_regclass(%s)", (index,)).fetchone()
    return "a uniqueness rule (a unique index)" if uniq and uniq[0] else None


def _check_unused(conn: psycopg.Connection, answer: Any) -> CheckResult:
    name = answer.strip().strip('"').lower()
    if name.startswith("public."):
        name = name[len("public."):]
    row = conn.execute("SELECT relname, idx_scan FROM pg_stat_user_indexes WHERE indexrelname = %s",
                       (name,)).fetchone()
    if row is None:
        return CheckResult(False, f"There is no index named {name!r} in this database: take the name from "
                                  "pg_stat_user_indexes.indexrelname.")
    table, scans = row
    if scans:
        return CheckResult(False, f"{name} was read {scans:,} times since the statistics began: it is used. Look for "
                                  "idx_scan = 0.")
    rule = _constraint_of(conn, name)
    if rule:
        return CheckResult(False, f"{name} has idx_scan = 0, but it enforces {rule}: dropping it drops a guarantee, "
                                  "not only a cost. Leave out indexes that back constraints (pg_index.indisunique).")
    if table != "plays":
        return CheckResult(False, f"{name} is not read either, but it is on {table}, where the app inserts nothing. "
                                  "The asked-for index is on the table the app inserts into (plays), where every "
                                  "INSERT has to maintain it.")
    return CheckResult(True, f"{name}: no scan since the statistics began, no constraint behind it, and every INSERT "
                             "into plays maintains it. Before dropping it for real: check the statistics' age, the "
                             "replicas (each has its own counts) and rare jobs (month-end reports).")


register(Exercise(
    id="09.unused_index",
    title="Which index does nothing but cost?",
    prompt=("From pg_stat_user_indexes, name the index on the table the app inserts into that no query has read "
            "since the statistics began and that does not enforce a constraint (answer with its name, a string)."),
    setup_fn=setup_state,
    checker=_check_unused,
    answer_kind=str,
    answer_hint="an index name (a string)",
    lesson="09_monitoring",
))
