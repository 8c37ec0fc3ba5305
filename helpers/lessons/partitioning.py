"""Helpers of notebook 06 (partitioning): build month partitions, read pruning from a plan, measure what a
write costs (time and WAL), read VACUUM's own report, and sweep planning time over the number of partitions.

The notebook shows the SQL itself; these functions only take the repetitive parts off it (24 ``CREATE TABLE ...
PARTITION OF`` statements, parsing plans and reports) so that they can be tested (``tests/test_lesson06.py``).
The lesson's exercises are registered at the end of this module (ids ``06.*``); their reference solutions are in
:mod:`helpers.lessons.solutions.partitioning`.
"""
from __future__ import annotations

import contextlib
import re
import statistics
import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Iterable, Iterator, Sequence

import psycopg
from psycopg import sql

from helpers.exercises import CheckResult, Exercise, register
from helpers.plans import Plan, explain
from helpers.timing import as_connection

__all__ = [
    "month_starts", "month_partition_sql", "create_month_partitions", "partition_rows", "partition_bounds",
    "partitions_of", "partitions_size", "explain_text", "measure_alternating", "PruneReport", "prune_report", "pruning", "capture_notices",
    "WriteCost", "wal_inspect_ready", "measure_write", "VacuumReport", "vacuum_report", "parse_vacuum_verbose",
    "SweepPoint", "create_int_partitions", "planning_time", "planning_sweep", "plot_sweep", "median",
]

SCAN_TYPES = ("Seq Scan", "Index Scan", "Index Only Scan", "Bitmap Heap Scan", "Tid Scan", "Tid Range Scan")


# ---------------------------------------------------------------------------------------------- building partitions

def month_starts(first: date, months: int) -> list[date]:
    """``months + 1`` month starts from ``first`` (a first of month): the bounds of ``months`` monthly partitions."""
    if first.day != 1:
        raise ValueError(f"{first} is not the first day of a month")
    out = []
    y, m = first.year, first.month
    for _ in range(months + 1):
        out.append(date(y, m, 1))
        y, m = (y, m + 1) if m < 12 else (y + 1, 1)
    return out


def month_partition_sql(parent: str, start: date, end: date, prefix: str | None = None) -> sql.Composed:
    """``CREATE TABLE <prefix>_YYYY_MM PARTITION OF <parent> FOR VALUES FROM (start) TO (end)`` (bounds in UTC)."""
    name = f"{prefix or parent}_{start:%Y_%m}"
    return sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})").format(
        sql.Identifier(name), sql.Identifier(parent),
        sql.Literal(f"{start:%Y-%m-%d} 00:00+00"), sql.Literal(f"{end:%Y-%m-%d} 00:00+00"))


def create_month_partitions(conn: Any, parent: str, first: date, months: int,
                            prefix: str | None = None) -> list[str]:
    """Create one partition per month of ``parent`` (partitioned by RANGE on a timestamptz), in one transaction.

    Returns the statements as SQL text, so the notebook can show what was sent.
    """
    conn = as_connection(conn)
    bounds = month_starts(first, months)
    statements = [month_partition_sql(parent, a, b, prefix) for a, b in zip(bounds, bounds[1:])]
    with conn.transaction():
        for stmt in statements:
            conn.execute(stmt)
    return [s.as_string(conn) for s in statements]


def partitions_of(conn: Any, parent: str) -> list[str]:
    """The leaf partitions of ``parent`` (a table or a partitioned index), sorted by name."""
    conn = as_connection(conn)
    rows = conn.execute(
        "SELECT relid::regclass::text FROM pg_partition_tree(%s::regclass) WHERE isleaf ORDER BY 1", (parent,)
    ).fetchall()
    return [r[0] for r in rows]


def partition_rows(conn: Any, parent: str) -> list[tuple[str, int]]:
    """``(partition, rows)`` for every leaf partition of ``parent``, empty ones included, sorted by name."""
    conn = as_connection(conn)
    query = sql.SQL(
        "SELECT t.relid::regclass::text, coalesce(n.rows, 0) FROM pg_partition_tree({parent_name}::regclass) AS t "
        "LEFT JOIN (SELECT tableoid AS relid, count(*) AS rows FROM {parent} GROUP BY tableoid) AS n USING (relid) "
        "WHERE t.isleaf ORDER BY 1"
    ).format(parent_name=sql.Literal(parent), parent=sql.Identifier(parent))
    return [(name, int(rows)) for name, rows in conn.execute(query).fetchall()]


def partition_bounds(conn: Any, parent: str) -> list[tuple[str, str]]:
    """``(partition, bound)`` as PostgreSQL prints the bound (``FOR VALUES FROM (...) TO (...)``, ``DEFAULT``)."""
    conn = as_connection(conn)
    rows = conn.execute(
        "SELECT c.oid::regclass::text, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass ORDER BY 1", (parent,)
    ).fetchall()
    return [(n, b) for n, b in rows]


def partitions_size(conn: Any, parent: str) -> int:
    """Bytes on disk of all partitions of ``parent`` with their indexes and TOAST (the parent itself has none)."""
    conn = as_connection(conn)
    return int(conn.execute(
        "SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree(%s::regclass) WHERE isleaf",
        (parent,)).fetchone()[0])


# ---------------------------------------------------------------------------------------------- pruning

@dataclass(frozen=True)
class PruneReport:
    """How many of a table's partitions a plan reads (lesson 06).

    ``in_plan``: scans of its partitions that the plan shows; ``removed_at_run``: partitions the executor removed
    at start-up, before running ("Subplans Removed": the value of a parameter is known only then), which the plan
    no longer shows; ``never_executed``: partitions shown but skipped while running (EXPLAIN ANALYZE only). The
    rest were pruned by the planner.
    """

    partitions: int
    in_plan: int
    removed_at_run: int
    never_executed: int = 0

    @property
    def pruned_at_plan(self) -> int:
        return self.partitions - self.in_plan - self.removed_at_run

    @property
    def scanned(self) -> int:
        """Partitions actually read (or that would be, without ANALYZE)."""
        return self.in_plan - self.never_executed

    def text(self) -> str:
        return (f"{self.partitions} partitions: pruned at plan time {self.pruned_at_plan}, "
                f"removed at run time {self.removed_at_run + self.never_executed}, scanned {self.scanned}")

    def __str__(self) -> str:
        return self.text()


def prune_report(plan: Plan, partitions: Iterable[str]) -> PruneReport:
    """Count the scans of ``partitions`` in ``plan`` and the subplans the executor removed."""
    names = {p.rsplit(".", 1)[-1] for p in partitions}
    in_plan = never = removed = 0
    for node in plan.nodes():
        removed += int(node.raw.get("Subplans Removed", 0) or 0)
        if node.node_type in SCAN_TYPES and node.relation in names:
            in_plan += 1
            if plan.analyzed and int(node.raw.get("Actual Loops", 1) or 0) == 0:
                never += 1
    return PruneReport(partitions=len(names), in_plan=in_plan, removed_at_run=removed, never_executed=never)


def explain_text(conn: Any, query: str, options: str = "") -> str:
    """PostgreSQL's own EXPLAIN text of ``query`` (``options`` e.g. ``"ANALYZE, COSTS OFF"``), for display only.

    With ANALYZE the statement runs, inside a transaction that is rolled back.
    """
    conn = as_connection(conn)
    prefix = f"EXPLAIN ({options}) " if options else "EXPLAIN "
    with conn.transaction(force_rollback=True):
        rows = conn.execute(prefix + query, prepare=False).fetchall()
    return "\n".join(r[0] for r in rows)


def pruning(conn: Any, parent: str, query: str, params: Any = None, analyze: bool = False) -> PruneReport:
    """EXPLAIN ``query`` and report how many partitions of ``parent`` it reads (lesson 06)."""
    conn = as_connection(conn)
    return prune_report(explain(conn, query, params, analyze=analyze), partitions_of(conn, parent))


def measure_alternating(conn: Any, queries: dict[str, str], rounds: int = 3, **kwargs: Any) -> dict[str, Any]:
    """Time several queries in alternating rounds (A, B, A, B, ...) and keep each one's fastest round (lesson 06).

    For sub-millisecond queries on a busy machine: a burst of load during one round would otherwise decide a
    comparison. ``kwargs`` go to :func:`helpers.timing.measure`; returns ``{label: Measurement}``.
    """
    from helpers.timing import measure

    best: dict[str, Any] = {}
    for _ in range(rounds):
        for label, query in queries.items():
            m = measure(conn, query, **kwargs)
            if label not in best or m.median < best[label].median:
                best[label] = m
    return best


# ---------------------------------------------------------------------------------------------- measuring writes

@contextlib.contextmanager
def capture_notices(conn: Any, level: str | None = None) -> Iterator[list[str]]:
    """Collect the server's notices (INFO, DEBUG ...) sent while the block runs, as their primary messages.

    With ``level`` (e.g. ``'debug1'``) ``client_min_messages`` is raised for the block and reset afterwards.
    """
    conn = as_connection(conn)
    messages: list[str] = []

    def handler(diag: psycopg.errors.Diagnostic) -> None:
        messages.append(diag.message_primary or "")

    conn.add_notice_handler(handler)
    if level:
        conn.execute(sql.SQL("SET client_min_messages = {}").format(sql.Literal(level)))
    try:
        yield messages
    finally:
        if level:
            conn.execute("RESET client_min_messages")
        conn.remove_notice_handler(handler)


@dataclass(frozen=True)
class WriteCost:
    """What one statement cost: wall time (including commit) and WAL (lesson 06).

    ``wal_bytes`` is the difference of the server's WAL position before and after, which also counts what other
    sessions wrote meanwhile; ``own_wal_bytes`` counts only this transaction's own WAL records (read back with the
    pg_walinspect extension), or is None where that extension cannot be used.
    """

    statement: str
    seconds: float
    wal_bytes: int
    own_wal_bytes: int | None = None
    rows: int = 0

    @property
    def wal(self) -> int:
        """The best figure available: the transaction's own WAL, else the WAL position difference."""
        return self.own_wal_bytes if self.own_wal_bytes is not None else self.wal_bytes


def wal_inspect_ready(conn: Any) -> bool:
    """True if pg_walinspect is installed here (installing it if this role may) and usable by this role."""
    conn = as_connection(conn)
    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        row = conn.execute(
            "SELECT has_function_privilege('pg_get_wal_records_info(pg_lsn, pg_lsn)', 'EXECUTE')").fetchone()
        return bool(row and row[0])
    except psycopg.Error:
        return False


def measure_write(conn: Any, statement: str, params: Any = None, *, walinspect: bool | None = None) -> WriteCost:
    """Run ``statement`` in its own transaction and return its time (commit included) and WAL (lesson 06).

    The statement is committed: it really changes the database. ``walinspect=None`` uses pg_walinspect when
    it is available (see :class:`WriteCost`).
    """
    conn = as_connection(conn)
    if walinspect is None:
        walinspect = wal_inspect_ready(conn)
    # A checkpoint may recycle the statement's WAL segments before they are read: on a busy server, any session's
    # DROP DATABASE forces one. A temporary replication slot of our own keeps them (dropped below; the server also
    # drops it on an error or when this session ends). Without the REPLICATION privilege there is none, and a
    # recycled segment falls back to the position difference.
    slot = _reserve_wal(conn) if walinspect else None
    try:
        start = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]
        t0 = time.perf_counter()
        with conn.transaction():
            xid = conn.execute("SELECT pg_current_xact_id()::text").fetchone()[0]
            cur = conn.execute(statement, params)
            rows = max(cur.rowcount, 0)
        seconds = time.perf_counter() - t0
        end = conn.execute("SELECT pg_current_wal_flush_lsn()").fetchone()[0]
        total = int(conn.execute("SELECT pg_wal_lsn_diff(%s, %s)", (end, start)).fetchone()[0])
        own = None
        if walinspect:
            xid32 = str(int(xid) % 2**32)  # the WAL records carry the 32-bit transaction id
            try:
                with conn.transaction():
                    own = int(conn.execute(
                        "SELECT coalesce(sum(record_length), 0) FROM pg_get_wal_records_info(%s, %s) "
                        "WHERE xid::text = %s", (start, end, xid32)).fetchone()[0])
            except (psycopg.errors.UndefinedFile, psycopg.errors.InternalError_):
                own = None  # "requested WAL segment ... has already been removed", or recycled while being read
    finally:
        if slot:
            with contextlib.suppress(psycopg.Error):
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    return WriteCost(statement=statement, seconds=seconds, wal_bytes=total, own_wal_bytes=own, rows=rows)


def _reserve_wal(conn: psycopg.Connection) -> str | None:
    """Create a temporary physical replication slot that reserves WAL from the last checkpoint on; its name, or None
    where it cannot or should not be made: a role without REPLICATION (asked first, so the server logs no error),
    ``max_replication_slots = 0``, ``wal_level = minimal``, or a ``max_slot_wal_keep_size`` limit (a checkpoint
    would end this very session to release a slot that keeps too much)."""
    name = f"pdw_walcount_{conn.info.backend_pid}"
    try:
        with conn.transaction():
            allowed = conn.execute(
                "SELECT (rolsuper OR rolreplication) AND current_setting('max_slot_wal_keep_size') = '-1' "
                "FROM pg_roles WHERE rolname = current_user").fetchone()
            if not (allowed and allowed[0]):
                return None
            conn.execute("SELECT pg_create_physical_replication_slot(%s, true, true)", (name,))
        return name
    except psycopg.Error:
        return None


@dataclass(frozen=True)
class VacuumReport:
    """What ``VACUUM (VERBOSE)`` says it did to one table (lesson 06), plus the wall time."""

    table: str
    seconds: float
    removed_rows: int
    remaining_rows: int
    pages_truncated: int
    pages_remaining: int
    index_scans: int
    wal_bytes: int
    wal_fpi: int


_VACUUM_RE = {
    "index_scans": r"index scans: (\d+)",
    "pages_truncated": r"pages: (\d+) removed",
    "pages_remaining": r"pages: \d+ removed, (\d+) remain",
    "removed_rows": r"tuples: (\d+) removed",
    "remaining_rows": r"tuples: \d+ removed, (\d+) remain",
    "wal_fpi": r"WAL usage: \d+ records, (\d+) full page images",
    "wal_bytes": r"WAL usage: \d+ records, \d+ full page images, (\d+) bytes",
}


def parse_vacuum_verbose(text: str) -> dict[str, int]:
    """The figures of one ``finished vacuuming ...`` message (PostgreSQL 15 to 18 print the same labels)."""
    out = {}
    for key, pattern in _VACUUM_RE.items():
        m = re.search(pattern, text)
        if m is None:
            raise ValueError(f"VACUUM VERBOSE output without {key!r}: {text[:200]!r}")
        out[key] = int(m.group(1))
    return out


def vacuum_report(conn: Any, table: str) -> VacuumReport:
    """Run ``VACUUM (VERBOSE) table`` and read its own report (the table's line, not its TOAST table's)."""
    conn = as_connection(conn)
    with capture_notices(conn) as notes:
        t0 = time.perf_counter()
        conn.execute(sql.SQL("VACUUM (VERBOSE) {}").format(sql.Identifier(table)))
        seconds = time.perf_counter() - t0
    mine = [n for n in notes if n.startswith("finished vacuuming") and f".{table}\"" in n.split(":")[0]]
    if not mine:
        raise ValueError(f"VACUUM VERBOSE reported nothing for {table!r}")
    return VacuumReport(table=table, seconds=seconds, **parse_vacuum_verbose(mine[0]))


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


# ---------------------------------------------------------------------------------------------- planning time sweep

@dataclass(frozen=True)
class SweepPoint:
    """Median planning time of one query over a table with ``partitions`` partitions, pruning on and off."""

    partitions: int
    pruning_on_s: float
    pruning_off_s: float

    @property
    def ratio(self) -> float:
        return self.pruning_off_s / self.pruning_on_s if self.pruning_on_s > 0 else float("inf")


def create_int_partitions(conn: Any, name: str, partitions: int, width: int = 1000) -> str:
    """An empty table ``name (k int PRIMARY KEY, v text)`` split by RANGE (k) into ``partitions`` parts of
    ``width`` keys. Returns the parent's DDL as text (the partitions follow the same pattern)."""
    conn = as_connection(conn)
    parent = sql.SQL("CREATE TABLE {} (k int PRIMARY KEY, v text) PARTITION BY RANGE (k)").format(
        sql.Identifier(name))
    with conn.transaction():
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(parent)
        for i in range(partitions):
            conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})").format(
                sql.Identifier(f"{name}_{i}"), sql.Identifier(name),
                sql.Literal(i * width), sql.Literal((i + 1) * width)))
    return parent.as_string(conn)


def planning_time(conn: Any, query: str, *, warmup: int = 3, repeat: int = 15) -> float:
    """Median planning time in seconds of ``query``, from ``EXPLAIN (SUMMARY, FORMAT JSON)`` (not executed)."""
    conn = as_connection(conn)
    times = []
    for i in range(warmup + repeat):
        row = conn.execute(f"EXPLAIN (SUMMARY, FORMAT JSON) {query}", prepare=False).fetchone()
        if i >= warmup:
            times.append(float(row[0][0]["Planning Time"]) / 1000.0)
    return statistics.median(times)


def planning_sweep(conn: Any, counts: Sequence[int] = (4, 16, 64, 256), *, key: int = 42,
                   prefix: str = "sweep", keep: bool = False) -> list[SweepPoint]:
    """For each partition count: build an empty partitioned table, time the planning of
    ``SELECT * FROM <table> WHERE k = <key>`` with ``enable_partition_pruning`` on and off (lesson 06).

    The tables are dropped afterwards unless ``keep``.
    """
    conn = as_connection(conn)
    points = []
    for n in counts:
        name = f"{prefix}_{n}"
        create_int_partitions(conn, name, n)
        query = sql.SQL("SELECT * FROM {} WHERE k = {}").format(sql.Identifier(name), sql.Literal(key)).as_string(conn)
        try:
            on = planning_time(conn, query)
            conn.execute("SET enable_partition_pruning = off")
            off = planning_time(conn, query)
        finally:
            conn.execute("RESET enable_partition_pruning")
        points.append(SweepPoint(n, on, off))
        if not keep:
            conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
    return points


def plot_sweep(points: Sequence[SweepPoint]) -> Any:
    """Planning time against the number of partitions, pruning on and off, log-log (a matplotlib Figure, PNG)."""
    from helpers.plans import png_figure

    fig = png_figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    xs = [p.partitions for p in points]
    ax.plot(xs, [p.pruning_off_s * 1000 for p in points], "o-", color="tab:red", label="pruning off")
    ax.plot(xs, [p.pruning_on_s * 1000 for p in points], "o-", color="tab:blue", label="pruning on")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_xlabel("partitions")
    ax.set_ylabel("planning time (ms, median)")
    ax.set_title("Planning SELECT ... WHERE k = 42")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return fig


# ---------------------------------------------------------------------------------------------- exercises

EX_PLAYS = "ex_plays"
EX_PLAYS_QUERY = ("SELECT count(*) FROM ex_plays\n"
                  "WHERE extract(year FROM played_at) = 2025 AND extract(month FROM played_at) = 3")
_EX_PLAYS_EXPECTED = ("SELECT count(*) FROM ex_plays "
                      "WHERE played_at >= '2025-03-01 00:00+00' AND played_at < '2025-04-01 00:00+00'")


def _setup_prunable(conn: psycopg.Connection) -> None:
    conn.execute("DROP TABLE IF EXISTS ex_plays")
    conn.execute("CREATE TABLE ex_plays (play_id bigint NOT NULL, track_id int NOT NULL, "
                 "played_at timestamptz NOT NULL) PARTITION BY RANGE (played_at)")
    create_month_partitions(conn, EX_PLAYS, date(2024, 1, 1), 24)
    if conn.execute("SELECT to_regclass('plays') IS NOT NULL").fetchone()[0]:
        conn.execute("INSERT INTO ex_plays SELECT play_id, track_id, played_at FROM plays WHERE play_id % 20 = 0 "
                     "AND played_at >= '2024-01-01 00:00+00' AND played_at < '2026-01-01 00:00+00'")
    else:  # a database without the music store (the exercise machinery's own tests): plays of the same shape
        conn.execute("INSERT INTO ex_plays SELECT g, 1 + g % 3503, timestamptz '2024-01-01 00:00+00' "
                     "+ g * interval '21 minutes' FROM generate_series(1, 50000) AS g")
    conn.execute("ANALYZE ex_plays")


def _one_query(answer: str) -> str | None:
    """The answer without a trailing ';', or None if it holds several statements."""
    text = answer.strip().rstrip(";").strip()
    if ";" in re.sub(r"'(?:[^']|'')*'", "", text):
        return None
    return text


def _check_prunable(conn: psycopg.Connection, answer: Any) -> CheckResult:
    from helpers.widgets import one_line_error

    query = _one_query(answer)
    if query is None:
        return CheckResult(False, "The answer should be a single SQL query (no ';' between statements).")
    expected = conn.execute(_EX_PLAYS_EXPECTED).fetchone()[0]
    try:
        with conn.transaction(force_rollback=True):
            conn.execute("SET TRANSACTION READ ONLY")
            conn.execute("SET LOCAL statement_timeout = '20s'")
            cur = conn.execute(query, prepare=False)
            if cur.description is None:
                return CheckResult(False, "That statement returns no rows; write a SELECT.")
            rows = cur.fetchall()
        report = pruning(conn, EX_PLAYS, query)
    except psycopg.Error as exc:
        return CheckResult(False, f"The query failed: {one_line_error(exc)}")
    if len(rows) != 1 or len(rows[0]) != 1:
        return CheckResult(False, "Return one value, the count (one row, one column).")
    named = [p for p in partitions_of(conn, EX_PLAYS) if re.search(rf"\b{re.escape(p)}\b", query, re.I)]
    if named:
        return CheckResult(
            False, f"Your query reads the partition {named[0]} by name. That is not pruning: the planner had nothing "
                   "to choose, and the report breaks when the month or the partitioning changes. Query ex_plays and "
                   "let the planner find the partition from the condition on played_at.")
    got = rows[0][0]
    between = re.search(r"\bbetween\b", query, re.I) is not None
    if got != expected or report.scanned > 1:
        if between:
            return CheckResult(
                False, f"BETWEEN includes its upper end: played_at BETWEEN '2025-03-01' AND '2025-04-01' also asks "
                       f"for the instant 2025-04-01 00:00, which belongs to April, so the plan reads "
                       f"{report.scanned} partitions (and counts {got!r} plays, the original {expected:,}). Use the "
                       "half-open range played_at >= '2025-03-01' AND played_at < '2025-04-01'.")
    if got != expected:
        return CheckResult(
            False, f"Your query counts {got!r} plays, the original query {expected:,}. Hint: March 2025 is the "
                   "half-open range played_at >= '2025-03-01' AND played_at < '2025-04-01' (session time zone UTC).")
    if report.scanned == 0:
        return CheckResult(False, "The plan reads no partition of ex_plays: count the plays, don't type the number.")
    if report.scanned > 1:
        wrapped = re.search(r"\b(extract|date_part|date_trunc|to_char|date)\s*\(|played_at\s*::", query, re.I)
        if wrapped:
            return CheckResult(
                False, f"Same count, but the plan still reads {report.scanned} of {report.partitions} partitions. "
                       "Hint: the planner prunes only when the partition key itself is compared with values "
                       "(played_at >= ... AND played_at < ...), not a function of it.")
        return CheckResult(
            False, f"Same count, but the plan still reads {report.scanned} of {report.partitions} partitions: your "
                   "condition on played_at lets through more than March. Hint: the half-open range "
                   "played_at >= '2025-03-01' AND played_at < '2025-04-01'.")
    return CheckResult(True, f"Same count ({expected:,}), and the plan reads 1 of {report.partitions} partitions "
                             f"({report.pruned_at_plan} pruned at plan time).")


EX_LOG_ROWS = 4000
_EX_LOG_GEN = ("SELECT g AS id, timestamptz '2025-11-01 00:00+00' + g * interval '37 minutes' AS logged_at, "
               "'event ' || g AS message FROM generate_series(1, %s) AS g" % EX_LOG_ROWS)
_JAN = ("'2026-01-01 00:00+00'", "'2026-02-01 00:00+00'")


def _setup_new_month(conn: psycopg.Connection) -> None:
    with conn.transaction():
        conn.execute("DROP TABLE IF EXISTS ex_log, ex_log_2026_01, ex_log_default")
        conn.execute("CREATE TABLE ex_log (id int NOT NULL, logged_at timestamptz NOT NULL, message text NOT NULL) "
                     "PARTITION BY RANGE (logged_at)")
        create_month_partitions(conn, "ex_log", date(2025, 11, 1), 2)
        conn.execute("CREATE TABLE ex_log_default PARTITION OF ex_log DEFAULT")
        conn.execute("INSERT INTO ex_log " + _EX_LOG_GEN)


def _route(conn: psycopg.Connection, ts: str) -> str:
    """The partition a new row with ``logged_at = ts`` would go to (inserted and rolled back)."""
    with conn.transaction(force_rollback=True):
        return conn.execute("INSERT INTO ex_log VALUES (-1, %s::timestamptz, 'probe') "
                            "RETURNING tableoid::regclass::text", (ts,)).fetchone()[0]


def _check_new_month(conn: psycopg.Connection, answer: Any) -> CheckResult:
    kind = conn.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass('ex_log')").fetchone()
    if not kind or kind[0] != "p":
        return CheckResult(False, "There is no partitioned table ex_log: run the exercise's setup cell again.")
    expected = conn.execute(f"SELECT count(*), sum(id), count(*) FILTER (WHERE logged_at >= {_JAN[0]} AND "
                            f"logged_at < {_JAN[1]}) FROM ({_EX_LOG_GEN}) AS gen").fetchone()
    got = conn.execute("SELECT count(*), sum(id) FROM ex_log").fetchone()
    if got[0] < expected[0]:
        return CheckResult(False, f"ex_log holds {got[0]:,} rows, {expected[0] - got[0]:,} fewer than the setup's "
                                  f"{expected[0]:,}: rows were deleted, not moved. Run the setup again; this time keep "
                                  "January's rows somewhere (e.g. the new table, created first as a plain table) "
                                  "before you delete them from the default, then attach it, in one transaction.")
    if tuple(got) != tuple(expected[:2]):
        return CheckResult(False, f"ex_log holds {got[0]:,} rows, it should still hold all {expected[0]:,} exactly "
                                  "once: some rows are there twice. Run the setup again and move the rows (delete "
                                  "them from the default) rather than copy them.")
    bounds = dict(partition_bounds(conn, "ex_log"))
    defaults = [p for p, b in bounds.items() if b == "DEFAULT"]
    if not defaults:
        return CheckResult(False, "ex_log has no default partition any more; keep one for rows that have no "
                                  "partition of their own (February's).")
    jan_first, jan_last = _route(conn, "2026-01-01 00:00+00"), _route(conn, "2026-01-31 23:59:59.999+00")
    if jan_first in defaults:
        return CheckResult(False, "A row from January 2026 still goes to the default partition. Hint: creating "
                                  "the partition fails while the default holds January rows: move them out first.")
    if jan_first != jan_last:
        return CheckResult(False, f"January 2026 is split between {jan_first} and {jan_last}; one partition should "
                                  "hold the whole month, FROM ('2026-01-01') TO ('2026-02-01').")
    for ts in ("2025-12-31 23:59:59+00", "2026-02-01 00:00+00"):
        if _route(conn, ts) == jan_first:
            return CheckResult(False, f"{jan_first} also takes a row at {ts}: its bounds should be exactly "
                                      "FROM ('2026-01-01 00:00+00') TO ('2026-02-01 00:00+00') (the upper bound is "
                                      "excluded).")
    in_jan = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(jan_first))).fetchone()[0]
    if in_jan != expected[2]:
        return CheckResult(False, f"{jan_first} holds {in_jan:,} rows, January has {expected[2]:,}.")
    return CheckResult(True, f"{jan_first} holds January's {in_jan:,} rows, the default keeps the rest, "
                             f"and all {expected[0]:,} rows are still there.")


register(Exercise(
    id="06.prunable_report",
    title="Let the planner prune",
    prompt=(
        "ex_plays is partitioned by month on played_at (24 partitions). This report reads every partition:\n\n"
        + "    " + EX_PLAYS_QUERY.replace("\n", "\n    ") + "\n\n"
        "Rewrite it so that it returns the same count but its plan reads only one partition. "
        "Give the query as a string."
    ),
    setup_fn=_setup_prunable,
    checker=_check_prunable,
    answer_kind=str,
    answer_hint="one SQL query as a string, \"SELECT ...\"",
    lesson="06_partitioning",
))

register(Exercise(
    id="06.new_month",
    title="Add a month that is already in the default partition",
    prompt=(
        "ex_log is partitioned by month on logged_at, with partitions for November and December 2025 and a DEFAULT "
        "partition, ex_log_default, which has caught the rows of January and February 2026.\n"
        "Give January 2026 a partition of its own (FOR VALUES FROM ('2026-01-01 00:00+00') TO "
        "('2026-02-01 00:00+00')) holding January's rows. Keep the default partition for everything else, and lose "
        "no row. Then run the check (it reads the database; no answer needed)."
    ),
    setup_fn=_setup_new_month,
    checker=_check_new_month,
    lesson="06_partitioning",
    starting_answer=None,
    quiet_until_changed=True,
))
