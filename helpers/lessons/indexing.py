"""Lesson 03 (indexing, measured): the helpers behind ``notebooks/03_indexing.ipynb``.

What lives here rather than in the notebook:

- :func:`show_explain` prints a raw ``EXPLAIN`` as psql would (for ``nbval-ignore-output`` cells), and
  :func:`heap_fetches`, :func:`plan_line`, :func:`scan_line`, :func:`stable_summary`, :func:`scale_summary`
  turn plans and measurements into text that is the same on PostgreSQL 15 and 18 (heap page counts are
  not: the same rows occupy a slightly different number of pages on the two servers);
- :func:`fastest_ratio` and :func:`loglog_slope`: the steadier statistics the lesson's checks use on a busy
  machine (the fastest run of each side);
- :func:`table_pages`, :func:`relation_size`, :func:`index_sizes`, :func:`pretty_bytes`: sizes from the catalog;
- :func:`hash_bucket_model` and :func:`hash_layout`: why a hash index has the size it has (buckets chosen at build
  from the estimated rows and the fill factor, allocated a split point at a time, plus overflow pages), predicted
  from PostgreSQL's rules and read back with ``pgstathashindex``;
- :func:`with_settings`: run something with planner settings changed for a moment (``enable_seqscan = off``,
  to see what the index the planner refused would have cost);
- :func:`insert_throughput`: the write cost of 0, 1, 3 and 6 indexes on a scratch table;
- :func:`redundant_indexes` and :func:`unused_indexes`: the two classic index audits;
- the lesson's checked exercises (ids ``03.*``), registered on import; reference solutions are in
  :mod:`helpers.lessons.solutions.indexing`.
"""
from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import psycopg
from psycopg import sql as pgsql
from psycopg.rows import dict_row

from helpers.exercises import CheckResult, Exercise, register
from helpers.fmt import fmt_rate, fmt_ratio, fmt_time
from helpers.plans import Plan, explain, has_seq_scan, plan_summary
from helpers.timing import Measurement, as_connection

__all__ = [
    "show_explain", "heap_fetches", "plan_line", "scan_direction", "stable_summary", "table_pages",
    "relation_size", "pretty_bytes", "index_sizes", "with_settings", "skip_scan_expected", "WriteCost",
    "insert_throughput", "RedundantIndex", "redundant_indexes", "UnusedIndex", "unused_indexes",
    "index_columns", "show_png", "loglog_slope", "fastest_ratio", "scan_line", "scale_summary",
    "HASH_ITEM_BYTES", "hash_bucket_model", "hash_layout",
]


# ------------------------------------------------------------------------------------------ plans

def show_explain(conn_or_lesson: Any, statement: str, params: Any = None) -> None:
    """Print the text of an ``EXPLAIN ...`` statement exactly as psql shows it (lesson 03).

    The statement is run in a transaction that is rolled back, so ``EXPLAIN ANALYZE`` of a
    data-changing statement changes nothing. Its numbers vary: show it in an ignore-output cell.
    """
    if not statement.lstrip().upper().startswith("EXPLAIN"):
        raise ValueError("show_explain runs EXPLAIN statements only; start the statement with EXPLAIN.")
    conn = as_connection(conn_or_lesson)
    with conn.transaction(force_rollback=True), conn.cursor() as cur:
        cur.execute(statement, params, prepare=False)
        for (line,) in cur.fetchall():
            print(line)


def heap_fetches(plan: Plan) -> int:
    """Rows that index-only scans in ``plan`` had to check in the table (``Heap Fetches``)."""
    return sum(int(n.raw.get("Heap Fetches", 0)) for n in plan.nodes())


def plan_line(plan: Plan) -> str:
    """The plan's node labels on one line, ``Aggregate > Index Only Scan using ... on plays``."""
    return " > ".join(line.strip() for line in plan_summary(plan).splitlines())


def scan_direction(plan: Plan) -> str | None:
    """``Forward`` or ``Backward`` for the first index scan in the plan, None without one."""
    for node in plan.nodes():
        if "Scan Direction" in node.raw and node.index:
            return str(node.raw["Scan Direction"])
    return None


def scan_line(plan: Plan) -> str:
    """Only the nodes that read a table or an index, ``Parallel Seq Scan on plays``: the part of a plan that
    stays the same when versions differ in how they aggregate above it."""
    return " > ".join(n.label() for n in plan.nodes() if n.relation or n.index)


def _work(m: Measurement, table: str | None, show_pages: bool, scans_only: bool = False) -> str:
    plan = m.plan
    line = (scan_line(plan) if scans_only else plan_line(plan)) if plan is not None else "n/a"
    if plan is not None and table and has_seq_scan(plan, table):
        return f"{line}; reads every page of {table}"
    if show_pages and m.pages is not None:
        return f"{line}; {m.pages:,} pages"
    return line


def stable_summary(result: Any, table: str | None = None, *, show_pages: bool = True, scans_only: bool = False) -> str:
    """A before/after result as text that is the same on every run and server version (lesson 03).

    Plans as node labels, pages as a number only where the plan does not read the table's own
    layout (``show_pages=False`` hides them), a sequential scan as "reads every page of <table>"
    (tables loaded on different servers differ by a few pages), and the speed-up through
    :func:`helpers.fmt.fmt_ratio`, which the sanitizer masks. ``scans_only=True`` keeps only the scan
    nodes (PostgreSQL 15 and 18 aggregate differently above a parallel scan).
    """
    return (
        f"before: {_work(result.before, table, show_pages, scans_only)}\n"
        f"after:  {_work(result.after, table, show_pages, scans_only)}\n"
        f"speed-up (before ÷ after): {fmt_ratio(result.ratio)}"
    )


def fastest_ratio(result_or_before: Any, after: Measurement | None = None) -> float:
    """Speed-up on the fastest run of each side, ``before.min / after.min`` (lesson 03).

    Pass a before/after result, or two measurements. Noise on a shared machine only ever adds time,
    so for effects of a few times (or for "no faster") this is steadier than the ratio of medians.
    """
    before = result_or_before if after is not None else result_or_before.before
    after = after if after is not None else result_or_before.after
    return before.min / after.min if after.min > 0 else float("inf")


def scale_summary(result: Any) -> str:
    """The scale explorer's result without the numbers that differ between servers (lesson 03).

    Per size: the plan without the index (a sequential scan reads the whole table, whose page count
    differs a little between PostgreSQL versions) and with it, with the pages the index lookup touched.
    """
    lines = []
    for n, before, after in zip(result.sizes, result.before, result.after):
        whole = "whole table" if has_seq_scan(before.plan, _scanned_table(before.plan)) else f"{before.pages:,} pages"
        lines.append(f"{n:>9,} rows: without the index {scan_line(before.plan)} ({whole}); "
                     f"with it {after.pages} pages")
    return "\n".join(lines)


def _scanned_table(plan: Plan) -> str:
    return next((n.relation for n in plan.nodes() if n.relation), "")


# ------------------------------------------------------------------------------------------ sizes

def table_pages(conn_or_lesson: Any, table: str) -> int:
    """Pages of 8 kB the table's heap occupies now (what a sequential scan reads)."""
    conn = as_connection(conn_or_lesson)
    row = conn.execute(
        "SELECT pg_relation_size(%s::regclass) / current_setting('block_size')::int", (table,)).fetchone()
    return int(row[0])


def relation_size(conn_or_lesson: Any, relation: str) -> int:
    """Size in bytes of a table's heap or of an index (``pg_relation_size``)."""
    conn = as_connection(conn_or_lesson)
    return int(conn.execute("SELECT pg_relation_size(%s::regclass)", (relation,)).fetchone()[0])


def pretty_bytes(n: int) -> str:
    """``24 kB``, ``21.4 MB``: powers of 1024 like ``pg_size_pretty``, one decimal above 10 MB."""
    if n < 1024 * 1024:
        return f"{n / 1024:,.0f} kB"
    if n < 10 * 1024 * 1024:
        return f"{n / 1024 / 1024:.2f} MB"
    return f"{n / 1024 / 1024:.1f} MB"


def index_sizes(conn_or_lesson: Any, table: str) -> list[tuple[str, str, int]]:
    """``(index name, access method and definition, bytes)`` for every index on ``table``, by name."""
    conn = as_connection(conn_or_lesson)
    rows = conn.execute(
        """SELECT i.relname, regexp_replace(pg_get_indexdef(i.oid), '^.* USING ', ''), pg_relation_size(i.oid)
           FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
           WHERE x.indrelid = %s::regclass ORDER BY i.relname""", (table,)).fetchall()
    return [(r[0], r[1], int(r[2])) for r in rows]


# ------------------------------------------------------------------------------------------ hash index layout
# PostgreSQL's rules, from src/backend/access/hash (hashpage.c: _hash_init, _hash_init_metabuffer, _hash_expandtable;
# hashutil.c: _hash_spareindex, _hash_get_totalbuckets) and src/include/access/hash.h. The same in 15 and 18.

HASH_ITEM_BYTES = 20
"""One hash index entry: an 8-byte tuple header (with the row pointer), the 4-byte hash code padded to 8, and the
4-byte line pointer. Fixed, whatever the indexed type: a hash index stores the hash code, not the value."""


def _ceil_log2(n: int) -> int:
    i, limit = 0, 1
    while limit < n:
        i, limit = i + 1, limit << 1
    return i


def _split_point(buckets: int) -> int:
    """The split point (phase) that bucket count ``buckets`` falls in (``_hash_spareindex``)."""
    group = _ceil_log2(buckets)
    if group < 10:  # the first 10 split points (up to 512 buckets) double the buckets in one go
        return group
    return 10 + ((group - 10) << 2) + (((buckets - 1) >> (group - 3)) & 3)  # later ones in four equal phases


def _buckets_through(split_point: int) -> int:
    """How many buckets exist once ``split_point`` is allocated (``_hash_get_totalbuckets``)."""
    if split_point < 10:
        return 1 << split_point
    group = 10 + ((split_point - 10) >> 2)
    half = 1 << (group - 1)
    return half + (half >> 2) * (((split_point - 10) & 3) + 1)


def hash_bucket_model(estimated_rows: float, rows: int, fillfactor: int = 75, page_bytes: int = 8192) -> dict[str, int]:
    """Buckets of a hash index built when the planner estimated ``estimated_rows`` and holding ``rows`` (lesson 03).

    * ``fill_target``: entries per bucket the index aims at, ``page_bytes * fillfactor / 100 // HASH_ITEM_BYTES``
      (307 at the default fillfactor of 75);
    * ``initial``: buckets created by ``CREATE INDEX``: estimated rows / fill_target, its whole part rounded up to
      the end of its split point (powers of two up to 512 buckets; beyond, each doubling is done in four equal
      phases, e.g. 512 -> 640 -> 768 -> 896 -> 1024), at least 2;
    * ``in_use``: after the rows went in: one bucket is split off each time the entries exceed fill_target x
      buckets, so ``max(initial, ceil(rows / fill_target))``;
    * ``allocated``: bucket pages the file holds: a split that starts a new split point (a phase, beyond 512
      buckets) allocates all of its pages at once, so ``in_use`` rounded up to the end of that split point or
      phase (the rest stay empty, "unused").
    """
    fill_target = max(10, page_bytes * fillfactor // 100 // HASH_ITEM_BYTES)
    wanted = estimated_rows / fill_target
    if wanted <= 2.0:
        initial = 2
    else:
        initial = _buckets_through(_split_point(int(wanted)))  # the C code passes the double as uint32: truncated
    in_use = max(initial, -(-rows // fill_target))
    allocated = _buckets_through(_split_point(in_use))
    return {"fill_target": fill_target, "initial": initial, "in_use": in_use, "allocated": allocated}


def build_row_estimate(conn_or_lesson: Any, table: str) -> float:
    """The row count a ``CREATE INDEX`` on ``table`` starts from now (lesson 03).

    Index builds size themselves with the planner's ``estimate_rel_size``: the density ``reltuples / relpages``
    recorded by the last ANALYZE, VACUUM or index build, times the table's current number of pages. (Not
    ``reltuples`` itself: a table that grew since its last ANALYZE is scaled up.) Only for a table analyzed at
    least once and not empty; otherwise the planner guesses from the row width, which this does not model.
    """
    conn = as_connection(conn_or_lesson)
    reltuples, relpages, pages = conn.execute(
        "SELECT reltuples, relpages, pg_relation_size(oid) / current_setting('block_size')::int "
        "FROM pg_class WHERE oid = %s::regclass", (table,)).fetchone()
    if reltuples < 0 or relpages <= 0:
        raise ValueError(f"{table} has no row estimate yet: run ANALYZE {table} first.")
    return float(round(reltuples / relpages * pages))


def hash_layout(conn_or_lesson: Any, index: str) -> dict[str, Any]:
    """The pages of hash index ``index`` by kind, from ``pgstathashindex`` (extension pgstattuple), plus its size.

    Keys: ``pages`` (the file, from ``pg_relation_size``), ``meta`` (always 1), ``bucket``, ``unused`` (allocated,
    never written), ``overflow``, ``bitmap``, ``live_items``, ``dead_items``, ``free_percent``. Creates the
    pgstattuple extension in the lesson's database if it is not there yet.
    """
    conn = as_connection(conn_or_lesson)
    available = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'pgstattuple'").fetchone()
    if available is None:
        raise RuntimeError("This server has no pgstattuple extension (part of PostgreSQL's contrib package): "
                           "install it to read a hash index's pages by kind.")
    conn.execute("CREATE EXTENSION IF NOT EXISTS pgstattuple")
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT pg_relation_size(%s::regclass) / current_setting('block_size')::int AS pages, "
            "bucket_pages, unused_pages, overflow_pages, bitmap_pages, live_items, dead_items, free_percent "
            "FROM pgstathashindex(%s::regclass)", (index, index)).fetchone()
    return {"pages": int(row["pages"]), "meta": 1, "bucket": int(row["bucket_pages"]),
            "unused": int(row["unused_pages"]), "overflow": int(row["overflow_pages"]),
            "bitmap": int(row["bitmap_pages"]), "live_items": int(row["live_items"]),
            "dead_items": int(row["dead_items"]), "free_percent": float(row["free_percent"])}


def index_columns(conn_or_lesson: Any, index: str) -> list[str]:
    """The key columns (or expressions) of an index, in order, without INCLUDE columns."""
    conn = as_connection(conn_or_lesson)
    rows = conn.execute(
        """SELECT pg_get_indexdef(x.indexrelid, k, true)
           FROM pg_index x, generate_series(1, x.indnkeyatts) AS k
           WHERE x.indexrelid = %s::regclass ORDER BY k""", (index,)).fetchall()
    return [r[0] for r in rows]


# ------------------------------------------------------------------------------------------ settings

@contextlib.contextmanager
def with_settings(conn_or_lesson: Any, **settings: str) -> Iterator[None]:
    """Change planner settings (``enable_seqscan="off"``) for the block, then restore them.

    Lesson 03 uses it to ask "what would the index the planner refused have cost?".
    """
    conn = as_connection(conn_or_lesson)
    old = {}
    for name, value in settings.items():
        old[name] = conn.execute("SELECT current_setting(%s)", (name,)).fetchone()[0]
        conn.execute("SELECT set_config(%s, %s, false)", (name, str(value)))
    try:
        yield
    finally:
        for name, value in old.items():
            conn.execute("SELECT set_config(%s, %s, false)", (name, value))


def skip_scan_expected(conn_or_lesson: Any) -> bool:
    """True on PostgreSQL 18 and later, whose B-tree can skip through a leading column (lesson 03)."""
    return as_connection(conn_or_lesson).info.server_version >= 180000


def show_png(fig: Any) -> Any:
    """Display a matplotlib figure as a PNG image (its text form is stable for nbval)."""
    from IPython.display import Image, display

    from helpers.plans import figure_png

    image = Image(data=figure_png(fig), format="png")
    display(image)
    return None


# ------------------------------------------------------------------------------------------ write cost

#: The indexes the write-cost measurement adds, in order: 1 uses the first, 3 the first three, ...
WRITE_COST_INDEXES: tuple[str, ...] = (
    "(customer_id)",
    "(track_id)",
    "(played_at)",
    "(device, played_at)",
    "(customer_id, track_id)",
    "(source, ms_played)",
)


@dataclass
class WriteCost:
    """Insert times of the same rows into tables with 0, 1, 3, ... indexes (lesson 03)."""

    rows: int
    index_counts: list[int]
    times_s: dict[int, list[float]]

    def median(self, k: int) -> float:
        return statistics.median(self.times_s[k])

    def rate(self, k: int) -> float:
        """Rows inserted per second with ``k`` indexes (median of the repeats)."""
        return self.rows / self.median(k)

    def slowdown(self, k: int) -> float:
        """How many times longer the insert takes with ``k`` indexes than with none."""
        return self.median(k) / self.median(self.index_counts[0])

    def text(self) -> str:
        n = len(next(iter(self.times_s.values())))
        lines = [f"INSERT of {self.rows:,} rows, median of {n} runs each:"]
        for k in self.index_counts:
            lines.append(f"{k} index{'es' if k != 1 else ''}: {fmt_time(self.median(k))}, {fmt_rate(self.rate(k))}, "
                         f"{fmt_ratio(self.slowdown(k))} the time with none")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()

    def figure(self) -> Any:
        """Bar chart: rows per second against the number of indexes."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6, 2.6), layout="constrained")
        ax = fig.subplots()
        labels = [str(k) for k in self.index_counts]
        ax.bar(labels, [self.rate(k) for k in self.index_counts], color="tab:blue")
        ax.set_xlabel("indexes on the table")
        ax.set_ylabel("rows inserted per second")
        ax.set_title(f"INSERT of {self.rows:,} rows (median)", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        return fig


def insert_throughput(
    conn_or_lesson: Any,
    index_counts: Sequence[int] = (0, 1, 3, 6),
    *,
    rows: int = 20_000,
    repeat: int = 5,
    warmup: int = 1,
    source: str = "plays",
    prefix: str = "write_cost",
) -> WriteCost:
    """Time ``INSERT ... SELECT`` of ``rows`` rows of ``source`` into tables with more and more indexes.

    One scratch table per index count (``<prefix>_<k>``, columns like ``plays``, indexes from
    :data:`WRITE_COST_INDEXES`). Each round empties every table and inserts into each in turn, so
    machine noise hits all counts alike; ``warmup`` rounds are not timed. The tables are dropped
    at the end. Timings include the commit (the WAL of the row and of every index entry).
    """
    conn = as_connection(conn_or_lesson)
    counts = sorted(set(int(k) for k in index_counts))
    if counts[0] < 0 or counts[-1] > len(WRITE_COST_INDEXES):
        raise ValueError(f"index counts must be between 0 and {len(WRITE_COST_INDEXES)}")
    src = pgsql.Identifier(source)
    tables = {k: pgsql.Identifier(f"{prefix}_{k}") for k in counts}
    times: dict[int, list[float]] = {k: [] for k in counts}
    try:
        for k, t in tables.items():
            conn.execute(pgsql.SQL("DROP TABLE IF EXISTS {}").format(t))
            conn.execute(pgsql.SQL("CREATE TABLE {} (LIKE {})").format(t, src))
            for cols in WRITE_COST_INDEXES[:k]:
                conn.execute(pgsql.SQL("CREATE INDEX ON {} " + cols).format(t))
        insert = {k: pgsql.SQL("INSERT INTO {} SELECT * FROM {} ORDER BY 1 LIMIT {}").format(
            t, src, pgsql.Literal(rows)) for k, t in tables.items()}
        for r in range(warmup + repeat):
            for k, t in tables.items():
                conn.execute(pgsql.SQL("TRUNCATE {}").format(t))
            for k in counts:
                t0 = time.perf_counter()
                conn.execute(insert[k])
                elapsed = time.perf_counter() - t0
                if r >= warmup:
                    times[k].append(elapsed)
    finally:
        for t in tables.values():
            conn.execute(pgsql.SQL("DROP TABLE IF EXISTS {}").format(t))
    return WriteCost(rows, counts, times)


# ------------------------------------------------------------------------------------------ audits

@dataclass(frozen=True)
class RedundantIndex:
    """An index another index on the same table makes unnecessary (lesson 03)."""

    table: str
    index: str
    covered_by: str
    reason: str
    size: int

    def __str__(self) -> str:
        return f"{self.index} on {self.table} ({pretty_bytes(self.size)}): {self.reason}"


_INDEXES_SQL = """
SELECT c.relname AS tbl, i.relname AS idx, i.oid, am.amname,
       x.indisunique, x.indisprimary, x.indnkeyatts,
       x.indkey::int2[] AS keys, x.indclass::oid[] AS classes, x.indoption::int2[] AS options,
       x.indexprs IS NOT NULL AS has_exprs, pg_get_expr(x.indpred, x.indrelid) AS pred,
       pg_relation_size(i.oid) AS size, con.conname IS NOT NULL AS is_constraint
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class c ON c.oid = x.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_am am ON am.oid = i.relam
LEFT JOIN pg_constraint con ON con.conindid = i.oid AND con.contype IN ('p', 'u', 'x')
WHERE n.nspname = current_schema() AND x.indisvalid AND (%(table)s::text IS NULL OR c.relname = %(table)s)
ORDER BY c.relname, i.relname
"""


def _cols(conn: psycopg.Connection, oid: int, n: int) -> str:
    rows = conn.execute("SELECT pg_get_indexdef(%s, k, true) FROM generate_series(1, %s) AS k", (oid, n)).fetchall()
    return ", ".join(r[0] for r in rows)


def redundant_indexes(conn_or_lesson: Any, table: str | None = None) -> list[RedundantIndex]:
    """Indexes whose work another index on the same table already does (lesson 03).

    An index A is reported when another index B of the same kind (B-tree), with the same
    predicate, has A's key columns as its leading columns (same operator classes; same sort
    directions, or all reversed), and covers A's INCLUDE columns. A unique index is only ever
    redundant to another unique index on exactly the same columns; a unique index makes a plain
    index on the same columns redundant (the classic: a UNIQUE column with a second index on it).
    Of two identical indexes the one backing a constraint is kept, else the older one.
    Expression indexes are compared only with identical definitions.
    """
    conn = as_connection(conn_or_lesson)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_INDEXES_SQL, {"table": table}).fetchall()
    out: list[RedundantIndex] = []
    for a in rows:
        for b in rows:
            if a["oid"] == b["oid"] or a["tbl"] != b["tbl"] or a["amname"] != b["amname"] or a["amname"] != "btree":
                continue
            if a["pred"] != b["pred"] or a["has_exprs"] or b["has_exprs"]:
                if not (a["has_exprs"] and b["has_exprs"] and _same_definition(conn, a["oid"], b["oid"])):
                    continue
            na, nb = a["indnkeyatts"], b["indnkeyatts"]
            a_keys, b_keys = list(a["keys"][:na]), list(b["keys"][:nb])
            if na > nb or b_keys[:na] != a_keys or list(b["classes"][:na]) != list(a["classes"][:na]):
                continue
            a_opt, b_opt = list(a["options"][:na]), list(b["options"][:na])
            if na > 1 and a_opt != b_opt and a_opt != [o ^ 3 for o in b_opt]:  # bit 1 DESC, bit 2 NULLS FIRST
                continue
            if not set(a["keys"][na:]) <= set(b["keys"]):  # A's INCLUDE columns must be in B
                continue
            same = na == nb and set(a["keys"]) == set(b["keys"])
            if a["indisunique"]:
                if not (b["indisunique"] and same):
                    continue
            if same and b["indisunique"] == a["indisunique"]:
                # identical twins: keep the constraint's, else the older one; report the other only
                if (b["is_constraint"], -b["oid"]) < (a["is_constraint"], -a["oid"]):
                    continue
            cols_a = _cols(conn, a["oid"], na)
            if same and b["indisunique"]:
                reason = f"the unique index {b['idx']} is on the same columns ({cols_a})"
            elif same:
                reason = f"{b['idx']} is an identical index on ({cols_a})"
            elif na == nb:
                reason = f"{b['idx']} has the same key ({cols_a}) and more columns in INCLUDE"
            else:
                reason = f"({cols_a}) are the leading columns of {b['idx']} ({_cols(conn, b['oid'], nb)})"
            out.append(RedundantIndex(a["tbl"], a["idx"], b["idx"], reason, int(a["size"])))
            break
    return out


def _same_definition(conn: psycopg.Connection, a: int, b: int) -> bool:
    defs = conn.execute(
        "SELECT regexp_replace(pg_get_indexdef(%s), '^CREATE (UNIQUE )?INDEX \\S+ ', ''), "
        "regexp_replace(pg_get_indexdef(%s), '^CREATE (UNIQUE )?INDEX \\S+ ', '')", (a, b)).fetchone()
    return defs[0] == defs[1]


@dataclass(frozen=True)
class UnusedIndex:
    """An index no query has read since the statistics were reset (lesson 03)."""

    table: str
    index: str
    scans: int
    size: int

    def __str__(self) -> str:
        return f"{self.index} on {self.table} ({pretty_bytes(self.size)}): {self.scans} scans"


def unused_indexes(conn_or_lesson: Any, tables: Sequence[str] | None = None) -> list[UnusedIndex]:
    """Indexes with ``idx_scan = 0`` in ``pg_stat_user_indexes``, except those enforcing a constraint.

    The statistics are cumulative since the last reset, and per server: on a replica, or over a
    month-end job, an index this list calls unused may be essential. This backend's pending
    counts are flushed first (``pg_stat_force_next_flush()``), so queries just run are counted.
    """
    conn = as_connection(conn_or_lesson)
    conn.execute("SELECT pg_stat_force_next_flush()")
    time.sleep(0.05)
    conn.execute("SELECT pg_stat_clear_snapshot()")
    rows = conn.execute(
        """SELECT s.relname, s.indexrelname, s.idx_scan, pg_relation_size(s.indexrelid)
           FROM pg_stat_user_indexes s JOIN pg_index x ON x.indexrelid = s.indexrelid
           WHERE s.idx_scan = 0 AND NOT x.indisunique AND NOT x.indisprimary
             AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = s.indexrelid)
             AND (%(t)s::text[] IS NULL OR s.relname = ANY(%(t)s::text[]))
           ORDER BY s.relname, s.indexrelname""", {"t": list(tables) if tables is not None else None}).fetchall()
    return [UnusedIndex(r[0], r[1], int(r[2]), int(r[3])) for r in rows]


# ------------------------------------------------------------------------------------------ exercises
# Each exercise builds its own table from generate_series (deterministic arithmetic, no random()),
# so it works in any database, on every server version, and checks it on the same rows.

EX_LOG_ROWS = 60_000
_DEVICES = "ARRAY['mobile','desktop','web','tablet','smart_speaker','car']"


def _create_log(conn: psycopg.Connection, name: str) -> None:
    table = pgsql.Identifier(name)
    conn.execute(pgsql.SQL("DROP TABLE IF EXISTS {}").format(table))
    conn.execute(pgsql.SQL(
        "CREATE TABLE {} WITH (autovacuum_enabled = off) AS "
        "SELECT g AS play_id, (1 + (g * 7919) % 2000)::int AS customer_id, (1 + (g * 104729) % 3500)::int AS track_id, "
        "timestamptz '2025-01-01 00:00:00+00' + g * interval '2 minutes' AS played_at, "
        "(30000 + (g * 37) % 300000)::int AS ms_played, (" + _DEVICES + ")[1 + (g * 13 + g / 7) % 6] AS device "
        "FROM generate_series(1::bigint, {}) AS g").format(table, pgsql.Literal(EX_LOG_ROWS)))
    conn.execute(pgsql.SQL("ALTER TABLE {} ADD PRIMARY KEY (play_id)").format(table))
    conn.execute(pgsql.SQL("ANALYZE {}").format(table))


# --- 03.index_only_scan

IOS_QUERY = "SELECT played_at, ms_played FROM ex03_plays WHERE customer_id = 42"


def _setup_ios(conn: psycopg.Connection) -> None:
    _create_log(conn, "ex03_plays")


def _check_ios(conn: psycopg.Connection, answer: Any) -> CheckResult:
    plan = explain(conn, IOS_QUERY, analyze=True)
    nodes = [n for n in plan.nodes() if n.relation == "ex03_plays"]
    if any(n.node_type == "Index Only Scan" for n in nodes):
        fetches = heap_fetches(plan)
        if fetches:
            return CheckResult(False, (
                f"It is an Index Only Scan, but it still checked {fetches:,} rows in the table (Heap Fetches), "
                "because the table's visibility map is not set. Hint: VACUUM ex03_plays."))
        return CheckResult(True, (
            f"{plan_line(plan)}, Heap Fetches 0: the query reads the index alone, {plan.root.pages:,} pages."))
    if _covering_index(conn, "ex03_plays", {"customer_id", "played_at", "ms_played"}):
        return CheckResult(False, (
            f"An index holds every column the query needs, but the plan is {plan_line(plan)}: the table's "
            "visibility map is not set, so an index-only scan would still visit the table for every row. "
            "Hint: VACUUM ex03_plays."))
    if has_seq_scan(plan, "ex03_plays"):
        return CheckResult(False, (
            "The plan reads the whole table (Seq Scan on ex03_plays). Hint: the query filters on customer_id and "
            "returns played_at and ms_played; an index that holds all three can answer it alone, e.g. with INCLUDE."))
    return CheckResult(False, (
        f"The plan is {plan_line(plan)}: it uses an index, but still visits the table for played_at and ms_played. "
        "Hint: put those columns in the index too (INCLUDE (played_at, ms_played)), then VACUUM the table."))


def _covering_index(conn: psycopg.Connection, table: str, columns: set[str]) -> str | None:
    """The name of an index on ``table`` holding all ``columns`` (as keys or INCLUDE), if any."""
    rows = conn.execute(
        """SELECT i.relname, array_agg(a.attname::text)
           FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
           JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = ANY(x.indkey::int2[])
           WHERE x.indrelid = %s::regclass AND x.indpred IS NULL GROUP BY i.relname ORDER BY i.relname""",
        (table,)).fetchall()
    for name, cols in rows:
        if columns <= set(cols):
            return name
    return None


# --- 03.redundant_index

def _setup_redundant(conn: psycopg.Connection) -> None:
    conn.execute("DROP TABLE IF EXISTS ex03_customer")
    conn.execute(
        "CREATE TABLE ex03_customer AS SELECT g AS customer_id, "
        "(ARRAY['Ada','Ben','Chloe','Dmitri','Emma','Farid','Grace','Hiro'])[1 + g % 8] AS first_name, "
        "(ARRAY['Silva','Muller','Kowalski','Nakamura','Okafor','Haddad'])[1 + g / 8 % 6] AS last_name, "
        "'user' || g || '@example.org' AS email, "
        "(ARRAY['Brazil','Germany','Poland','Japan','Nigeria','Canada','France'])[1 + g % 7] AS country, "
        "CASE WHEN g % 5 = 0 THEN 'Acme Audio Ltd' END AS company "
        "FROM generate_series(1, 3000) AS g")
    conn.execute("ALTER TABLE ex03_customer ADD PRIMARY KEY (customer_id)")
    conn.execute("ALTER TABLE ex03_customer ADD CONSTRAINT ex03_customer_email_key UNIQUE (email)")
    conn.execute("CREATE INDEX ex03_customer_name_idx ON ex03_customer (last_name, first_name)")
    conn.execute("CREATE INDEX ex03_customer_first_name_idx ON ex03_customer (first_name)")
    conn.execute("CREATE INDEX ex03_customer_lower_email_idx ON ex03_customer (lower(email))")
    conn.execute("CREATE INDEX ex03_customer_email_idx ON ex03_customer (email)")
    conn.execute("CREATE INDEX ex03_customer_company_idx ON ex03_customer (country) WHERE company IS NOT NULL")
    conn.execute("ANALYZE ex03_customer")


_NOT_REDUNDANT = {
    "ex03_customer_pkey": "it is the primary key: it enforces that customer_id is unique and finds rows by id",
    "ex03_customer_email_key": "it enforces the UNIQUE constraint on email; dropping it would drop the rule",
    "ex03_customer_name_idx": "no other index starts with last_name",
    "ex03_customer_first_name_idx": "first_name is the second column of (last_name, first_name), not the first, "
                                    "so that index cannot find a first name on its own (before PostgreSQL 18)",
    "ex03_customer_lower_email_idx": "it indexes lower(email), an expression; only it serves a WHERE clause "
                                     "on lower(email)",
    "ex03_customer_company_idx": "it is a partial index (WHERE company IS NOT NULL) on country; nothing else "
                                 "indexes country",
}


def _check_redundant(conn: psycopg.Connection, answer: Any) -> CheckResult:
    name = answer.strip().strip('"').lower()
    if "." in name:
        name = name.rsplit(".", 1)[1]
    found = {r.index: r for r in redundant_indexes(conn, "ex03_customer")}
    existing = {r[0] for r in index_sizes(conn, "ex03_customer")} if _exists(conn, "ex03_customer") else set()
    if not existing:
        return CheckResult(False, "There is no table ex03_customer: run the exercise's setup cell first.")
    if name in found:
        return CheckResult(True, f"{name} is redundant: {found[name].reason}. DROP INDEX {name}; saves "
                                 f"{pretty_bytes(found[name].size)} and work on every write.")
    if name not in existing:
        return CheckResult(False, (f"ex03_customer has no index named {name!r}. Its indexes: "
                                   f"{', '.join(sorted(existing))}."))
    why = _NOT_REDUNDANT.get(name, "no other index does its work")
    return CheckResult(False, f"{name} is not redundant: {why}. Hint: look for two indexes on the same column.")


def _exists(conn: psycopg.Connection, table: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()[0]


# --- 03.column_order

ORDER_QUERY = ("SELECT count(*) FROM ex03_log WHERE device = 'car' "
               "AND played_at >= '2025-01-20' AND played_at < '2025-02-10'")


def _setup_order(conn: psycopg.Connection) -> None:
    _create_log(conn, "ex03_log")
    conn.execute("VACUUM ex03_log")


def _check_order(conn: psycopg.Connection, answer: Any) -> CheckResult:
    if not _exists(conn, "ex03_log"):
        return CheckResult(False, "There is no table ex03_log: run the exercise's setup cell first.")
    plan = explain(conn, ORDER_QUERY, analyze=True)
    used = [n.index for n in plan.nodes() if n.index and n.index != "ex03_log_pkey"]
    if not used:
        return CheckResult(False, (
            f"The plan ({plan_line(plan)}) uses no index of yours. Hint: create one index on ex03_log with the two "
            "columns of the WHERE clause."))
    cols = index_columns(conn, used[0])
    if cols[:2] == ["device", "played_at"]:
        return CheckResult(True, (
            f"{used[0]} ({', '.join(cols)}): equality column first, range column second, so the matching entries "
            f"sit next to each other in the index; the query touches {plan.root.pages:,} pages."))
    if cols[:2] == ["played_at", "device"]:
        return CheckResult(False, (
            f"{used[0]} ({', '.join(cols)}) is used, but with the range column first PostgreSQL walks every entry of "
            f"those three weeks, for every device ({plan.root.pages:,} pages). Hint: put the column compared with = "
            "first."))
    return CheckResult(False, (
        f"The plan uses {used[0]} ({', '.join(cols)}), which does not hold both columns of the WHERE clause in a "
        "useful order. Hint: one index on two columns; which one goes first?"))


register(Exercise(
    id="03.index_only_scan",
    title="Make this query an index-only scan",
    prompt=(f"The query\n    {IOS_QUERY}\nreads ex03_plays ({EX_LOG_ROWS:,} rows) to return two columns of a few "
            "rows. Change the database so that it becomes an Index Only Scan that never visits the table "
            "(Heap Fetches: 0), then run the check."),
    setup_fn=_setup_ios,
    checker=_check_ios,
    lesson="03_indexing",
    quiet_until_changed=True,
))

register(Exercise(
    id="03.redundant_index",
    title="Find the redundant index",
    prompt=("The table ex03_customer has six indexes besides its primary key. Exactly one of them does nothing "
            "another index does not already do. Which one? Give its name as a string (the indexes are listed by "
            "\\d ex03_customer in psql, or in pg_indexes)."),
    setup_fn=_setup_redundant,
    checker=_check_redundant,
    answer_kind=str,
    answer_hint="an index name as a string, such as \"ex03_customer_name_idx\"",
    lesson="03_indexing",
))

register(Exercise(
    id="03.column_order",
    title="Choose the column order",
    prompt=(f"The dashboard query\n    {ORDER_QUERY}\ncounts one device's plays over three weeks. Create ONE index "
            "on two columns of ex03_log that makes it touch as few pages as possible: which column goes first? "
            "Then run the check."),
    setup_fn=_setup_order,
    checker=_check_order,
    lesson="03_indexing",
    quiet_until_changed=True,
))


def loglog_slope(sizes: Sequence[int], seconds: Sequence[float]) -> float:
    """Least-squares slope of log(time) against log(rows): about 1 is linear growth, about 0 flat (lesson 03).

    Pass the fastest run of each size (``Measurement.min``): noise on a shared machine only ever adds time, so
    the minimum is the steadiest estimate of what the query itself costs.
    """
    import math

    if len(sizes) != len(seconds) or len(sizes) < 2:
        raise ValueError("need at least two sizes, each with a time")
    xs = [math.log10(n) for n in sizes]
    ys = [math.log10(max(s, 1e-9)) for s in seconds]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
