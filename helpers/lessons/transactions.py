"""Notebook 07 (transactions and concurrency): the lesson's tables, the contention runs, the job queue, exercises.

The step-by-step anomalies use :class:`helpers.sessions.Sessions` directly in the notebook. This module holds what
runs many threads at once: :func:`hammer` (N workers x K increments of one stock counter, one variant of the
read-modify-write each), :func:`run_queue` (workers draining a job table with ``FOR UPDATE`` or ``SKIP LOCKED``),
the retry loop :func:`with_retry`, :func:`vacuum_counts` (what ``VACUUM VERBOSE`` could remove) and two exercises.
"""
from __future__ import annotations

import functools
import random
import types
import re
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import psycopg
from psycopg import errors as pgerr
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from helpers.core.errors import WorkbookError
from helpers.exercises import CheckResult, Exercise, register
from helpers.fmt import fmt_time
from helpers.sessions import Sessions, connect_like, wait_until_blocked

__all__ = ["setup_tables", "hammer", "Contention", "VARIANTS", "run_queue", "QueueRun", "with_retry",
           "vacuum_counts", "make_stock_model", "write_skew"]

SERIALIZATION_FAILURE = "40001"
DEADLOCK = "40P01"
JOBS = 300
LEDGER = 500


# ---------------------------------------------------------------------------------------------- tables

def setup_tables(conn: psycopg.Connection, jobs: int = JOBS) -> dict[str, int]:
    """(Re)create the lesson's own tables; returns the ids the lesson uses, chosen from the data.

    ``stock``: copies in stock per track (the counter the threads fight over), with a ``version`` column;
    ``duty``: which support reps are on duty (write skew); ``job``/``job_done``: the queue and its log;
    ``ledger``: rows to update for VACUUM. Autovacuum is off on them so it does not vacuum or analyze them behind the
    lesson's back (the removable horizon is per database: any snapshot in the lesson database, an autoanalyze of
    another table included, would still hold dead rows back).
    """
    conn.execute("DROP TABLE IF EXISTS stock, duty, job_done, job, ledger")
    conn.execute("""CREATE TABLE stock (
        track_id integer PRIMARY KEY REFERENCES track, in_stock integer NOT NULL, version integer NOT NULL DEFAULT 1)
        WITH (autovacuum_enabled = off)""")
    conn.execute("INSERT INTO stock (track_id, in_stock) SELECT track_id, 100 FROM track ORDER BY track_id LIMIT 10")
    conn.execute("""CREATE TABLE duty (
        employee_id integer PRIMARY KEY REFERENCES employee, on_duty boolean NOT NULL)
        WITH (autovacuum_enabled = off)""")
    conn.execute("INSERT INTO duty SELECT employee_id, true FROM employee "
                 "WHERE title = 'Sales Support Agent' ORDER BY employee_id LIMIT 2")
    conn.execute("""CREATE TABLE job (
        job_id integer PRIMARY KEY, track_id integer NOT NULL REFERENCES track,
        status text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'done')))
        WITH (autovacuum_enabled = off)""")
    conn.execute("CREATE TABLE job_done (job_id integer NOT NULL REFERENCES job, worker integer NOT NULL) "
                 "WITH (autovacuum_enabled = off)")
    fill_jobs(conn, jobs)
    # for VACUUM: half-empty pages, so no page fills up and gets pruned on the fly before VACUUM counts
    conn.execute("""CREATE TABLE ledger (invoice_id integer PRIMARY KEY, total numeric(10, 2) NOT NULL)
        WITH (fillfactor = 50, autovacuum_enabled = off)""")
    conn.execute("INSERT INTO ledger SELECT invoice_id, total FROM invoice ORDER BY invoice_id LIMIT %s", (LEDGER,))
    conn.execute("ANALYZE stock, duty, job, ledger")
    track = conn.execute("SELECT min(track_id) FROM stock").fetchone()[0]
    reps = [r[0] for r in conn.execute("SELECT employee_id FROM duty ORDER BY employee_id")]
    if len(reps) != 2:
        raise WorkbookError("The lesson needs two support reps (employees titled 'Sales Support Agent').")
    return {"track": track, "rep1": reps[0], "rep2": reps[1]}


def fill_jobs(conn: psycopg.Connection, jobs: int = JOBS) -> None:
    """Empty the queue and enqueue ``jobs`` jobs (one per track, the first tracks by id)."""
    conn.execute("TRUNCATE job_done, job")
    conn.execute("INSERT INTO job (job_id, track_id) SELECT row_number() OVER (ORDER BY track_id), track_id "
                 "FROM (SELECT track_id FROM track ORDER BY track_id LIMIT %s) t", (jobs,))


# ---------------------------------------------------------------------------------------------- retry

@dataclass
class RetryStats:
    attempts: int = 0
    retries: int = 0
    gave_up: int = 0


def with_retry(fn: Callable[[], Any], *, stats: RetryStats | None = None, attempts: int = 10,
               base_delay: float = 0.001, max_delay: float = 0.05,
               retry_on: tuple[type[BaseException], ...] = (pgerr.SerializationFailure, pgerr.DeadlockDetected)) -> Any:
    """Call ``fn`` until it does not raise a retryable error (40001, 40P01), with exponential backoff and jitter.

    ``fn`` must run a whole transaction (begin to commit): a retry starts it again from the beginning.
    """
    stats = stats if stats is not None else RetryStats()
    for attempt in range(attempts):
        stats.attempts += 1
        try:
            return fn()
        except retry_on:
            if attempt == attempts - 1:
                stats.gave_up += 1
                raise
            stats.retries += 1
            time.sleep(random.uniform(0, min(max_delay, base_delay * 2 ** attempt)))  # backoff, not synchronisation


# ---------------------------------------------------------------------------------------------- contention

class _Retry(Exception):
    """An optimistic update found the version changed: read again."""


def _naive(conn: psycopg.Connection, tid: int, think: float, stats: RetryStats) -> None:
    qty = conn.execute("SELECT in_stock FROM stock WHERE track_id = %s", (tid,)).fetchone()[0]
    _think(think)
    conn.execute("UPDATE stock SET in_stock = %s WHERE track_id = %s", (qty - 1, tid))


def _atomic(conn: psycopg.Connection, tid: int, think: float, stats: RetryStats) -> None:
    _think(think)
    conn.execute("UPDATE stock SET in_stock = in_stock - 1 WHERE track_id = %s", (tid,))


def _for_update(conn: psycopg.Connection, tid: int, think: float, stats: RetryStats) -> None:
    with conn.transaction():
        qty = conn.execute("SELECT in_stock FROM stock WHERE track_id = %s FOR UPDATE", (tid,)).fetchone()[0]
        _think(think)
        conn.execute("UPDATE stock SET in_stock = %s WHERE track_id = %s", (qty - 1, tid))


def _optimistic(conn: psycopg.Connection, tid: int, think: float, stats: RetryStats) -> None:
    while True:
        stats.attempts += 1
        qty, version = conn.execute("SELECT in_stock, version FROM stock WHERE track_id = %s", (tid,)).fetchone()
        _think(think)
        cur = conn.execute("UPDATE stock SET in_stock = %s, version = version + 1 "
                           "WHERE track_id = %s AND version = %s", (qty - 1, tid, version))
        if cur.rowcount == 1:
            return
        stats.retries += 1


def _serializable(conn: psycopg.Connection, tid: int, think: float, stats: RetryStats) -> None:
    def once() -> None:
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
            _naive(conn, tid, think, stats)

    with_retry(once, stats=stats, attempts=50)


def _think(seconds: float) -> None:
    if seconds:
        time.sleep(seconds)  # simulated application work between the read and the write


def make_stock_model() -> Any:
    """An ORM class on ``stock`` with ``version_id_col``: SQLAlchemy adds ``AND version = ?`` to each UPDATE."""
    class Base(DeclarativeBase):
        pass

    class Stock(Base):
        __tablename__ = "stock"
        track_id: Mapped[int] = mapped_column(primary_key=True)
        in_stock: Mapped[int]
        version: Mapped[int] = mapped_column(nullable=False)
        __mapper_args__ = {"version_id_col": version}

    return Stock


def _orm_worker_factory(engine: Any) -> Callable:
    from sqlalchemy.orm import Session
    from sqlalchemy.orm.exc import StaleDataError

    Stock = make_stock_model()

    def worker(conn: Any, tid: int, think: float, stats: RetryStats) -> None:
        while True:
            stats.attempts += 1
            try:
                with Session(engine) as session, session.begin():
                    row = session.get(Stock, tid)
                    _think(think)
                    row.in_stock -= 1
                return
            except StaleDataError:
                stats.retries += 1

    return worker


VARIANTS = {
    "naive read-modify-write": _naive,
    "atomic UPDATE": _atomic,
    "SELECT ... FOR UPDATE": _for_update,
    "version column (SQL)": _optimistic,
    "version_id_col (ORM)": None,   # built per run around an engine
    "SERIALIZABLE + retry": _serializable,
}


@dataclass
class Contention:
    """One variant of N workers x K decrements on one counter (lesson 07)."""

    variant: str
    workers: int
    per_worker: int
    before: int
    after: int
    seconds: float
    retries: int
    errors: list[str] = field(default_factory=list)

    @property
    def expected(self) -> int:
        return self.before - self.workers * self.per_worker

    @property
    def lost(self) -> int:
        """Decrements that some worker made but the counter does not show."""
        return self.after - self.expected

    @property
    def per_second(self) -> float:
        return self.workers * self.per_worker / self.seconds

    def text(self) -> str:
        return (f"{self.variant:<24} lost updates {self.lost:>4}, retries {self.retries:>4}, "
                f"{fmt_time(self.seconds / (self.workers * self.per_worker))} per decrement")


def _run_workers(db: Any, label: str, workers: int, settings: list[tuple[str, tuple]],
                 body: Callable[[int, Any], None]) -> float:
    """Run ``body(i, conn)`` in ``workers`` threads, each on its own connection, all released at once by a barrier.

    Returns the seconds from the release until the last worker finished. Each connection gets ``lock_timeout`` 20 s and
    then runs ``settings``. A worker's exception is reported (one sentence, naming ``label``), never swallowed.
    """
    errors: list[str] = []
    conns: list[psycopg.Connection] = []
    barrier = threading.Barrier(workers + 1)

    def work(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            body(i, conns[i])
        except Exception as exc:  # reported below, never swallowed
            errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")

    try:
        for _ in range(workers):
            c = connect_like(db, f"pdw:07-{label}")
            c.execute("SET lock_timeout = '20s'")
            for statement, params in settings:
                c.execute(statement, params)
            conns.append(c)
        threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(workers)]
        for t in threads:
            t.start()
        barrier.wait(timeout=30)
        t0 = time.perf_counter()
        for t in threads:
            t.join(timeout=120)
        seconds = time.perf_counter() - t0
        if any(t.is_alive() for t in threads):
            raise WorkbookError(f"The {label} workers did not finish within 120 s.")
    finally:
        for c in conns:
            c.close()
    if errors:
        raise WorkbookError(f"{len(errors)} {label} worker(s) failed: {errors[0]}")
    return seconds


def hammer(db: Any, variant: str, *, workers: int = 8, per_worker: int = 50, think: float = 0.001,
           track: int | None = None, synchronous_commit: str = "off") -> Contention:
    """Run ``variant`` with ``workers`` threads, each on its own connection, each decrementing ``per_worker`` times.

    The workers' commits do not wait for the WAL flush (``synchronous_commit = off``) unless asked: a row lock is
    held until the commit's flush, which would make every variant as slow as the disk and hide the locking.
    """
    if variant not in VARIANTS:
        raise WorkbookError(f"Unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}.")
    conn0 = getattr(db, "conn", db)
    tid = track if track is not None else conn0.execute("SELECT min(track_id) FROM stock").fetchone()[0]
    conn0.execute("UPDATE stock SET in_stock = %s, version = 1 WHERE track_id = %s", (workers * per_worker * 2, tid))
    before = workers * per_worker * 2
    engine = None
    fn = VARIANTS[variant]
    if fn is None:
        from sqlalchemy import create_engine

        def orm_connect() -> psycopg.Connection:
            c = connect_like(db, "pdw:07-orm")
            c.execute("SELECT set_config('synchronous_commit', %s, false)", (synchronous_commit,))
            return c

        engine = create_engine("postgresql+psycopg://", creator=orm_connect, pool_size=workers, max_overflow=0)
        fn = _orm_worker_factory(engine)
    stats = [RetryStats() for _ in range(workers)]

    def decrements(i: int, conn: Any) -> None:
        for _ in range(per_worker):
            fn(conn, tid, think, stats[i])

    sync = ("SELECT set_config('synchronous_commit', %s, false)", (synchronous_commit,))
    try:
        seconds = _run_workers(db, variant, workers, [sync], decrements)
    finally:
        if engine is not None:
            engine.dispose()
    after = conn0.execute("SELECT in_stock FROM stock WHERE track_id = %s", (tid,)).fetchone()[0]
    return Contention(variant, workers, per_worker, before, after, seconds, sum(s.retries for s in stats))


def plot_contention(runs: dict[str, Contention]) -> Any:
    """Display only: lost updates and decrements per second of each variant, side by side."""
    import matplotlib.pyplot as plt

    names = list(runs)[::-1]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 2.8), sharey=True)
    ax1.barh(names, [runs[n].lost for n in names], color="tab:red")
    ax1.set_xlabel("lost updates")
    ax2.barh(names, [runs[n].per_second for n in names])
    ax2.set_xlabel("decrements per second")
    for ax in (ax1, ax2):
        ax.grid(True, axis="x", alpha=0.3)
    fig.suptitle(f"{next(iter(runs.values())).workers} workers x {next(iter(runs.values())).per_worker} "
                 "decrements of one counter")
    fig.tight_layout()
    plt.close(fig)
    return fig


# ---------------------------------------------------------------------------------------------- the job queue

TAKE = {
    False: "SELECT job_id FROM job WHERE status = 'queued' ORDER BY job_id LIMIT 1 FOR UPDATE",
    True: "SELECT job_id FROM job WHERE status = 'queued' ORDER BY job_id LIMIT 1 FOR UPDATE SKIP LOCKED",
}


@dataclass
class QueueRun:
    skip_locked: bool
    workers: int
    jobs: int
    done: int
    distinct: int
    left: int
    seconds: float
    waiting_s: float          # summed over workers: time spent in the statement that takes a job
    empty_handed: int         # takes that returned no row while jobs were still queued

    @property
    def per_second(self) -> float:
        return self.done / self.seconds

    @property
    def duplicates(self) -> int:
        return self.done - self.distinct

    @property
    def lost(self) -> int:
        return self.jobs - self.distinct

    @property
    def waiting_share(self) -> float:
        """Share of the workers' total time spent taking a job (waiting for locks, mostly)."""
        return self.waiting_s / (self.workers * self.seconds)

    def text(self) -> str:
        name = "FOR UPDATE SKIP LOCKED" if self.skip_locked else "FOR UPDATE"
        return (f"{name:<22} {self.done} jobs done ({self.distinct} distinct, {self.duplicates} twice, "
                f"{self.lost} lost), {fmt_time(self.seconds / self.done)} per job, "
                f"{round(100 * self.waiting_share)}% of worker time taking a job")


def run_queue(db: Any, *, skip_locked: bool, workers: int = 4, work: float = 0.005,
              jobs: int = JOBS) -> QueueRun:
    """Refill the queue with ``jobs`` jobs; ``workers`` threads take, "work" ``work`` seconds, mark done, commit."""
    conn0 = getattr(db, "conn", db)
    fill_jobs(conn0, jobs)
    take = TAKE[skip_locked]
    waits = [0.0] * workers
    empties = [0] * workers

    def take_jobs(i: int, conn: Any) -> None:
        while True:
            with conn.transaction():
                t = time.perf_counter()
                row = conn.execute(take).fetchone()
                waits[i] += time.perf_counter() - t
                if row is None:
                    # plain FOR UPDATE + LIMIT 1 can come back empty when the row it waited for was taken
                    if conn.execute("SELECT EXISTS (SELECT FROM job WHERE status = 'queued')").fetchone()[0]:
                        empties[i] += 1
                        continue
                    return
                time.sleep(work)  # simulated work on the job
                conn.execute("UPDATE job SET status = 'done' WHERE job_id = %s", row)
                conn.execute("INSERT INTO job_done (job_id, worker) VALUES (%s, %s)", (row[0], i))

    # synchronous_commit off as in hammer(): the lock hand-over is measured, not the disk
    seconds = _run_workers(db, "queue", workers, [("SET synchronous_commit = off", ())], take_jobs)
    done, distinct = conn0.execute("SELECT count(*), count(DISTINCT job_id) FROM job_done").fetchone()
    left = conn0.execute("SELECT count(*) FROM job WHERE status = 'queued'").fetchone()[0]
    return QueueRun(skip_locked, workers, jobs, done, distinct, left, seconds, sum(waits), sum(empties))


# ---------------------------------------------------------------------------------------------- VACUUM

def vacuum_counts(conn: psycopg.Connection, table: str) -> dict[str, int]:
    """``VACUUM (VERBOSE)`` the table; return its tuple counts: removed, remain, dead but not yet removable."""
    from psycopg import sql as pgsql

    notes: list[str] = []

    def handler(diag: Any) -> None:
        notes.append(diag.message_primary or "")

    conn.add_notice_handler(handler)
    try:
        conn.execute(pgsql.SQL("VACUUM (VERBOSE) {}").format(pgsql.Identifier(table)))
    finally:
        conn.remove_notice_handler(handler)
    text = "\n".join(notes)
    m = re.search(r"tuples: (\d+) removed, (\d+) remain, (\d+) are dead but not yet removable", text)
    if not m:
        raise WorkbookError("VACUUM VERBOSE printed no tuple counts this workbook can read.")
    return {"removed": int(m[1]), "remain": int(m[2]), "not_removable": int(m[3])}


def dead_tuples(conn: psycopg.Connection, table: str) -> int:
    """``n_dead_tup`` of ``table`` after flushing this backend's statistics (PostgreSQL 15+)."""
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.execute("SELECT pg_stat_clear_snapshot()")
    return conn.execute("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = %s", (table,)).fetchone()[0]


# ---------------------------------------------------------------------------------------------- write skew

def write_skew(db: Any, level: str) -> Sessions:
    """Two reps go off duty at the same time, each after checking that the other is still on duty.

    Returns the (closed) sessions, whose steps and timeline say what happened at isolation ``level``.
    """
    conn0 = getattr(db, "conn", db)
    conn0.execute("UPDATE duty SET on_duty = true")
    rep1, rep2 = [r[0] for r in conn0.execute("SELECT employee_id FROM duty ORDER BY employee_id")]
    check = "SELECT count(*) FROM duty WHERE on_duty"
    with Sessions(db, "A", "B") as s:
        s.run("A", f"BEGIN ISOLATION LEVEL {level}")
        s.run("B", f"BEGIN ISOLATION LEVEL {level}")
        s.run("A", check)
        s.run("B", check)
        s.run("A", f"UPDATE duty SET on_duty = false WHERE employee_id = {rep1}")
        s.run("B", f"UPDATE duty SET on_duty = false WHERE employee_id = {rep2}")
        s.run("A", "COMMIT")
        s.run("B", "COMMIT")
    return s


def refused(s: Sessions) -> bool:
    """Whether any step failed with a serialization failure."""
    return any(st.sqlstate == SERIALIZATION_FAILURE for st in s.steps)


# ---------------------------------------------------------------------------------------------- exercises

LEVELS = {"read uncommitted": "READ UNCOMMITTED", "read committed": "READ COMMITTED",
          "repeatable read": "REPEATABLE READ", "serializable": "SERIALIZABLE"}


def _check_level(conn: psycopg.Connection, answer: Any) -> CheckResult:
    key = re.sub(r"[\s_]+", " ", str(answer).strip().rstrip(";").strip().lower())
    key = key.removeprefix("isolation level ").strip()
    if key not in LEVELS:
        return CheckResult(False, f"{answer!r} is not an isolation level; PostgreSQL has READ UNCOMMITTED, "
                                  "READ COMMITTED, REPEATABLE READ and SERIALIZABLE.")
    s = write_skew(conn, LEVELS[key])
    on_duty = conn.execute("SELECT count(*) FROM duty WHERE on_duty").fetchone()[0]
    if refused(s) and on_duty >= 1:
        return CheckResult(True, f"At {LEVELS[key]} the second COMMIT failed with 40001 and {on_duty} rep stays on "
                                 "duty: only SERIALIZABLE notices that each transaction read a row the other then changed.")
    hint = {"read uncommitted": " PostgreSQL runs READ UNCOMMITTED as READ COMMITTED.",
            "repeatable read": " Each transaction sees its own snapshot and they change different rows, so there is "
                               "no row both write: REPEATABLE READ has nothing to refuse.",
            "read committed": " Each statement sees what was committed before it; nothing is checked at COMMIT."}[key]
    return CheckResult(False, f"At {LEVELS[key]} both transactions committed and {on_duty} reps are on duty.{hint} "
                              "Which level also tracks what each transaction read?")


register(Exercise(
    id="07.isolation_level",
    title="Pick the isolation level that refuses the write skew",
    prompt=("Two support reps each check that the other is on duty, then go off duty themselves, at the same time. "
            "Give the isolation level (a string such as 'read committed') at which PostgreSQL refuses one of them."),
    setup_fn=lambda conn: conn.execute("UPDATE duty SET on_duty = true"),
    checker=_check_level,
    answer_kind=str,
    answer_hint="an isolation level as a string, e.g. 'read committed'",
    lesson="07_transactions",
))


SELL_PROMPT = """def sell(conn, track_id):
    qty = conn.execute("SELECT in_stock FROM stock WHERE track_id = %s", (track_id,)).fetchone()[0]
    conn.execute("UPDATE stock SET in_stock = %s WHERE track_id = %s", (qty - 1, track_id))"""


class _Paused:
    """A connection stand-in for the check: after sell()'s first statement that reads or writes, it stops until told
    to go on (SET and BEGIN do not count)."""

    def __init__(self, conn: psycopg.Connection, paused: threading.Event, go: threading.Event) -> None:
        self._conn, self._paused, self._go, self._n = conn, paused, go, 0

    def execute(self, query: Any, *args: Any, **kw: Any) -> Any:
        cur = self._conn.execute(query, *args, **kw)
        text = query if isinstance(query, (str, bytes)) else getattr(query, "as_string", lambda c: str(query))(self._conn)
        text = text.decode() if isinstance(text, bytes) else text
        if text.split(None, 1)[0].upper() in ("SET", "BEGIN", "START"):
            return cur  # settings: the pause comes after the first statement that reads or writes
        self._n += 1
        if self._n == 1:
            self._paused.set()
            if not self._go.wait(30):
                raise WorkbookError("The check waited too long for the other sale.")
        return cur

    def cursor(self, *args: Any, **kw: Any) -> Any:
        raise WorkbookError("Use conn.execute(...) in sell(), so the check can interleave two sales.")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def race_two_sales(db: Any, sell: Callable[[Any, int], Any]) -> dict[str, Any]:
    """Sale A runs its first statement and pauses; sale B runs to the end (or waits on A's lock); A finishes.

    The worst interleaving for a read-modify-write, made to happen every time. Returns the stock before and
    after, and each sale's error (None when it succeeded).
    """
    conn0 = getattr(db, "conn", db)
    tid = conn0.execute("SELECT min(track_id) FROM stock").fetchone()[0]
    conn0.execute("UPDATE stock SET in_stock = 10, version = 1 WHERE track_id = %s", (tid,))
    paused, go = threading.Event(), threading.Event()
    result: dict[str, Any] = {"before": 10, "a_error": None, "b_error": None, "b_waited": False, "a_open": False}
    ca = cb = None
    try:
        ca = connect_like(db, "pdw:07-sale-A")
        cb = connect_like(db, "pdw:07-sale-B")
        for c in (ca, cb):
            c.execute("SET lock_timeout = '10s'")
            c.execute("SET statement_timeout = '20s'")
        b_done = threading.Event()

        def sale_a() -> None:
            try:
                sell(_Paused(ca, paused, go), tid)
            except Exception as exc:
                result["a_error"] = exc
            finally:
                paused.set()

        def sale_b() -> None:
            try:
                sell(cb, tid)
            except Exception as exc:
                result["b_error"] = exc
            finally:
                b_done.set()

        ta = threading.Thread(target=sale_a, daemon=True)
        ta.start()
        if not paused.wait(20):
            raise WorkbookError("sell() did not run its first statement within 20 s.")
        tb = threading.Thread(target=sale_b, daemon=True)
        tb.start()
        if wait_until_blocked(conn0, cb.info.backend_pid, b_done.is_set, timeout=20, what="The second sale"):
            result["b_waited"] = True
        go.set()
        ta.join(30)
        if not ta.is_alive() and ca.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            result["a_open"] = True   # sell() returned inside a transaction: end it, or B waits for ever
            ca.rollback()
        tb.join(30)
        if ta.is_alive() or tb.is_alive():
            raise WorkbookError("A sale did not finish within 30 s (is a transaction left open?).")
    finally:
        go.set()
        for c in (ca, cb):
            if c is not None:
                c.close()
    result["after"] = conn0.execute("SELECT in_stock FROM stock WHERE track_id = %s", (tid,)).fetchone()[0]
    return result


def _check_sell(conn: psycopg.Connection, answer: Any) -> CheckResult:
    try:
        r = race_two_sales(conn, answer)
    except WorkbookError as exc:
        return CheckResult(False, str(exc))
    if r["a_open"]:
        return CheckResult(False, "sell() returned with its transaction still open (a BEGIN without COMMIT), so its "
                                  "locks stayed held; end it, e.g. with `with conn.transaction():` around the body.")
    for who in ("a_error", "b_error"):
        exc = r[who]
        if exc is None:
            continue
        if getattr(exc, "sqlstate", None) == SERIALIZATION_FAILURE:
            return CheckResult(False, "One sale failed with 40001 (could not serialize access): a stricter isolation "
                                      "level refuses the lost update, but then sell() must catch the error and try "
                                      "the whole transaction again (with_retry), or avoid the conflict with an "
                                      "atomic UPDATE or FOR UPDATE.")
        return CheckResult(False, f"A sale raised {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    sold = r["before"] - r["after"]
    if sold == 1:
        return CheckResult(False, "Two sales ran but the stock went down by 1: a lost update. Both read the same "
                                  "in_stock before either wrote; a transaction alone does not prevent that under "
                                  "READ COMMITTED. Hint: let the server do the arithmetic (in_stock = in_stock - 1) "
                                  "or lock the row when you read it (FOR UPDATE, inside a transaction).")
    if sold != 2:
        return CheckResult(False, f"Two sales changed the stock by {sold}, not by 2.")
    how = "the second sale waited for the first one's row lock" if r["b_waited"] else "no sale overwrote the other"
    return CheckResult(True, f"Two sales, in_stock {r['before']} → {r['after']}: {how}.")


register(Exercise(
    id="07.safe_sell",
    title="Make this sale safe under concurrency",
    prompt=("This function sells one copy of a track:\n\n" + SELL_PROMPT + "\n\nTwo of them at once can lose a sale. "
            "Give a function sell(conn, track_id) that cannot (conn is an autocommit psycopg connection). The check "
            "runs two sales in the worst order: the first pauses after its first statement while the second runs."),
    setup_fn=lambda conn: None,
    checker=_check_sell,
    answer_kind=(types.FunctionType, functools.partial),
    answer_hint="a function sell(conn, track_id)",
    lesson="07_transactions",
))
