"""Notebook 05 (query patterns): wide rows and TOAST, offset vs keyset pagination, batch writes, upserts.

Each section has a small measuring function here, so the notebook stays prose, SQL and a few calls:

- :func:`make_track_docs` builds ``track_doc``, the tracks with a long text column stored in TOAST, and
  :func:`fetch_size` measures what a query really sends back (rows and bytes);
- :data:`OFFSET_PAGE` / :data:`KEYSET_PAGE` are the two ways to fetch a page of ``plays``;
  :func:`pagination_runs` measures both as the page depth grows;
- :func:`batch_variants` applies the same price changes four ways (a loop of single-row UPDATEs,
  ``executemany``, one set-based UPDATE, COPY + UPDATE) and :func:`time_batch` times each in a
  transaction that is rolled back, after a VACUUM of ``track`` outside the timing, so every run starts from the same
  values and without the dead row versions of the runs before it.

Exercises ``05.*`` are registered at the end; reference solutions are in :mod:`helpers.lessons.solutions.query_patterns`.
"""
from __future__ import annotations

import re
import statistics
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Sequence

import psycopg
from psycopg import sql as pgsql

from helpers.core.errors import WorkbookError
from helpers.exercises import CheckResult, Exercise, register
from helpers.fmt import fmt_rate, fmt_time
from helpers.timing import Measurement, as_connection, measure, taking_turns

__all__ = [
    "make_track_docs", "relation_pages", "fetch_size", "FetchSize",
    "OFFSET_PAGE", "KEYSET_PAGE", "PAGE_SIZE", "cursor_at", "PageRun", "pagination_runs", "plot_pagination",
    "make_changes", "batch_variants", "BatchRun", "time_batch", "time_batches", "plot_rates", "network_batch",
    "NetworkBatchRun",
]


# ---------------------------------------------------------------------------------------------- width and TOAST

def make_track_docs(conn: Any, chunks: int = 180) -> None:
    """Create ``track_doc``: every track plus ``lyrics``, a ~6 kB text that PostgreSQL moves to TOAST (lesson 05).

    The text is made of md5 hex strings, which pglz cannot shrink by the 25 % it requires, so it is
    stored out of line uncompressed: the table's own pages stay small, the TOAST table holds the bulk.
    """
    conn = as_connection(conn)
    conn.execute("DROP TABLE IF EXISTS track_doc")
    conn.execute(
        "CREATE TABLE track_doc AS "
        "SELECT t.track_id, t.name, t.album_id, t.milliseconds, t.unit_price, "
        "       (SELECT string_agg(md5(t.track_id::text || ':' || g::text), ' ') "
        "        FROM generate_series(1, %s) AS g) AS lyrics "
        "FROM track AS t ORDER BY t.track_id", (chunks,))
    conn.execute("ALTER TABLE track_doc ADD PRIMARY KEY (track_id)")
    conn.execute("VACUUM ANALYZE track_doc")


def relation_pages(conn: Any, table: str) -> dict[str, int]:
    """8 kB pages of a table's heap and of its TOAST table (0 when it has none)."""
    conn = as_connection(conn)
    row = conn.execute(
        "SELECT pg_relation_size(c.oid) / current_setting('block_size')::int, "
        "       coalesce(pg_relation_size(NULLIF(c.reltoastrelid, 0)), 0) / current_setting('block_size')::int "
        "FROM pg_class c WHERE c.oid = %s::regclass", (table,)).fetchone()
    return {"heap": int(row[0]), "toast": int(row[1])}


@dataclass(frozen=True)
class FetchSize:
    """What a query sent back: rows, columns and the bytes of the values in text form."""

    rows: int
    columns: int
    value_bytes: int

    @property
    def bytes_per_row(self) -> float:
        return self.value_bytes / self.rows if self.rows else 0.0


def fetch_size(conn: Any, query: str, params: Any = None) -> FetchSize:
    """Run ``query`` and measure its result: rows, columns, and the bytes of all values (deterministic)."""
    conn = as_connection(conn)
    cur = conn.execute(query, params)
    rows = cur.fetchall()
    total = 0
    for row in rows:
        for value in row:
            if value is not None:
                total += len(str(value).encode())
    return FetchSize(len(rows), len(cur.description or ()), total)


# ---------------------------------------------------------------------------------------------- pagination

PAGE_SIZE = 20
COLUMNS = "play_id, customer_id, track_id, played_at"
OFFSET_PAGE = f"""SELECT {COLUMNS}
FROM plays
ORDER BY played_at, play_id
LIMIT %(size)s OFFSET %(offset)s"""
KEYSET_PAGE = f"""SELECT {COLUMNS}
FROM plays
WHERE (played_at, play_id) > (%(after_at)s, %(after_id)s)
ORDER BY played_at, play_id
LIMIT %(size)s"""


def cursor_at(conn: Any, position: int) -> dict[str, Any]:
    """The keyset cursor of the row just before ``position`` (0-based) in (played_at, play_id) order."""
    conn = as_connection(conn)
    if position <= 0:
        return {"after_at": "-infinity", "after_id": 0}
    row = conn.execute("SELECT played_at, play_id FROM plays ORDER BY played_at, play_id LIMIT 1 OFFSET %s",
                       (position - 1,)).fetchone()
    return {"after_at": row[0], "after_id": row[1]}


@dataclass(frozen=True)
class PageRun:
    """One page depth: the same page fetched with OFFSET and with a keyset cursor."""

    page: int
    offset: Measurement
    keyset: Measurement

    @property
    def ratio(self) -> float:
        return self.offset.min / self.keyset.min

    def text(self) -> str:
        return (f"page {self.page:>6,}: OFFSET {self.offset.pages:,} pages, {fmt_time(self.offset.min)} | "
                f"keyset {self.keyset.pages:,} pages, {fmt_time(self.keyset.min)}")


def pagination_runs(conn: Any, pages: Sequence[int], *, size: int = PAGE_SIZE, repeat: int = 5) -> list[PageRun]:
    """Fetch page ``p`` (1-based) of ``plays`` both ways for each ``p``; check both give the same rows (lesson 05).

    Times are each variant's fastest of ``repeat`` runs; pages come from EXPLAIN (ANALYZE, BUFFERS).
    """
    conn = as_connection(conn)
    out = []
    for page in pages:
        offset = (page - 1) * size
        p_off = {"size": size, "offset": offset}
        p_key = {"size": size, **cursor_at(conn, offset)}
        a = conn.execute(OFFSET_PAGE, p_off).fetchall()
        b = conn.execute(KEYSET_PAGE, p_key).fetchall()
        if a != b or len(a) != size:
            raise AssertionError(f"page {page}: OFFSET and keyset disagree")
        out.append(PageRun(page, measure(conn, OFFSET_PAGE, p_off, warmup=1, repeat=repeat),
                           measure(conn, KEYSET_PAGE, p_key, warmup=1, repeat=repeat)))
    return out


def plot_pagination(runs: list[PageRun]) -> Any:
    """Display only: time per page against page depth, both axes logarithmic (a matplotlib Figure)."""
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    pages = [r.page for r in runs]
    ax1.loglog(pages, [r.offset.min * 1000 for r in runs], marker="o", label="LIMIT ... OFFSET")
    ax1.loglog(pages, [r.keyset.min * 1000 for r in runs], marker="o", label="keyset (WHERE (a, b) > ...)")
    ax1.set_xlabel("page number")
    ax1.set_ylabel("time per page (ms)")
    ax1.set_title("time")
    ax2.loglog(pages, [r.offset.pages for r in runs], marker="o", label="LIMIT ... OFFSET")
    ax2.loglog(pages, [r.keyset.pages for r in runs], marker="o", label="keyset")
    ax2.set_xlabel("page number")
    ax2.set_ylabel("8 kB pages touched")
    ax2.set_title("work")
    for ax in (ax1, ax2):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    plt.close(fig)
    return fig


# ---------------------------------------------------------------------------------------------- batch writes

def make_changes(conn: Any, n: int) -> list[tuple[int, Decimal]]:
    """``n`` (track_id, new unit_price) pairs, as an application would compute them: deterministic."""
    conn = as_connection(conn)
    rows = conn.execute("SELECT track_id, unit_price FROM track ORDER BY track_id LIMIT %s", (n,)).fetchall()
    # the "business rule" runs in Python: a price per track that SQL alone would not know
    return [(tid, (price + Decimal("0.10") + Decimal(tid % 7) / 100).quantize(Decimal("0.01"))) for tid, price in rows]


UPDATE_ONE = "UPDATE track SET unit_price = %s WHERE track_id = %s"
UPDATE_SET = """UPDATE track AS t
SET unit_price = c.unit_price
FROM unnest(%s::int[], %s::numeric[]) AS c(track_id, unit_price)
WHERE t.track_id = c.track_id"""
COPY_STAGE = "CREATE TEMP TABLE price_change (track_id int, unit_price numeric(10, 2)) ON COMMIT DROP"
COPY_IN = "COPY price_change (track_id, unit_price) FROM STDIN"
COPY_APPLY = """UPDATE track AS t
SET unit_price = c.unit_price
FROM price_change AS c
WHERE t.track_id = c.track_id"""


def _loop(conn: psycopg.Connection, changes: list[tuple[int, Decimal]]) -> None:
    with conn.cursor() as cur:
        for track_id, price in changes:
            cur.execute(UPDATE_ONE, (price, track_id))


def _executemany(conn: psycopg.Connection, changes: list[tuple[int, Decimal]]) -> None:
    with conn.cursor() as cur:
        cur.executemany(UPDATE_ONE, [(price, track_id) for track_id, price in changes])


def _set_based(conn: psycopg.Connection, changes: list[tuple[int, Decimal]]) -> None:
    conn.execute(UPDATE_SET, ([c[0] for c in changes], [c[1] for c in changes]))


def _copy(conn: psycopg.Connection, changes: list[tuple[int, Decimal]]) -> None:
    conn.execute(COPY_STAGE)
    with conn.cursor() as cur, cur.copy(COPY_IN) as copy:
        for row in changes:
            copy.write_row(row)
    conn.execute(COPY_APPLY)


def batch_variants() -> dict[str, Callable[[psycopg.Connection, list[tuple[int, Decimal]]], None]]:
    """The four ways to apply the same changes (lesson 05); each runs inside the caller's transaction."""
    return {"loop of UPDATEs": _loop, "executemany": _executemany, "one UPDATE": _set_based,
            "COPY + UPDATE": _copy}


@dataclass(frozen=True)
class BatchRun:
    """One batch variant: rows changed, and the wall-clock and client process CPU time of each run (lesson 05)."""

    name: str
    rows: int
    times_s: tuple[float, ...]
    cpu_s: tuple[float, ...] = ()

    @property
    def best(self) -> float:
        return min(self.times_s)

    @property
    def median(self) -> float:
        return statistics.median(self.times_s)

    @property
    def rate(self) -> float:
        """Rows per second of the median run (of the only run, for one run)."""
        return self.rows / self.median

    def text(self) -> str:
        cpu = f", client process CPU {fmt_time(statistics.median(self.cpu_s))}" if self.cpu_s else ""
        return (f"{self.name:<16} {self.rows:>6,} rows: {fmt_rate(self.rate)} (median of {len(self.times_s)} runs "
                f"{fmt_time(self.median)}{cpu}; fastest {fmt_time(self.best)})")


def _vacuum_track(conn: psycopg.Connection) -> None:
    """Remove the dead row versions earlier rolled-back runs left in ``track`` (VACUUM needs autocommit, outside a
    transaction)."""
    if not conn.autocommit or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise WorkbookError("The batch timings need the connection in autocommit and outside a transaction (each run "
                            "starts with a VACUUM); use the lesson's connection as it is, not inside a transaction.")
    conn.execute("VACUUM track")


def time_batch(conn: Any, name: str, fn: Callable[[psycopg.Connection, list], None],
               changes: list[tuple[int, Decimal]], *, repeat: int = 3) -> BatchRun:
    """Apply ``changes`` with ``fn`` ``repeat`` times, each in a transaction that is checked, then rolled back.

    Before each run, outside its timing, ``VACUUM track`` removes the dead row versions the runs before it left (a
    rolled-back UPDATE leaves its new versions and index entries behind until a vacuum). The check counts, inside
    the transaction, the changed tracks whose price is not the new one: it must be 0, so a variant cannot look fast
    by doing less.
    """
    conn = as_connection(conn)
    ids = [c[0] for c in changes]
    prices = [c[1] for c in changes]
    times, cpu = [], []
    for _ in range(repeat):
        _vacuum_track(conn)
        with conn.transaction(force_rollback=True):
            t0, c0 = time.perf_counter(), time.process_time()
            fn(conn, changes)
            elapsed, used = time.perf_counter() - t0, time.process_time() - c0
            wrong = conn.execute(
                "SELECT count(*) FROM track AS t JOIN unnest(%s::int[], %s::numeric[]) AS c(track_id, unit_price) "
                "USING (track_id) WHERE t.unit_price IS DISTINCT FROM c.unit_price", (ids, prices)).fetchone()[0]
        if wrong:
            raise AssertionError(f"{name} did not apply the changes ({wrong:,} of {len(ids):,} tracks have another "
                                 "price)")
        times.append(elapsed)
        cpu.append(used)
    return BatchRun(name, len(changes), tuple(times), tuple(cpu))


def time_batches(conn: Any, variants: dict[str, Callable[[psycopg.Connection, list], None]],
                 changes: list[tuple[int, Decimal]], *, rounds: int = 5) -> list[BatchRun]:
    """:func:`time_batch` for each variant, once per round, the variants taking turns within each round.

    Round r starts with the r-th variant (the order rotates), so no variant always runs first or last; a busy moment
    on the machine slows one run of each variant, not every run of one. Compare variants by their medians
    (lesson 05).
    """
    times: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    for name in taking_turns(variants, rounds):
        run = time_batch(conn, name, variants[name], changes, repeat=1)
        times[name] += run.times_s
        cpu[name] += run.cpu_s
    return [BatchRun(name, len(changes), tuple(times[name]), tuple(cpu[name])) for name in variants]


@dataclass(frozen=True)
class NetworkBatchRun:
    """A batch variant run through the latency proxy: its timing and the client writes the proxy delayed.

    Without pipelining the client waits for each reply before it writes again, so writes are round trips;
    psycopg's ``executemany`` pipelines, sending its writes without waiting, so their delays overlap.
    """

    run: BatchRun
    writes: int
    delay_ms: float

    def text(self) -> str:
        return (f"{self.run.name:<16} {fmt_time(self.run.best)}, {fmt_rate(self.run.rows / self.run.best)} "
                f"(fastest of {len(self.run.times_s)})")


def network_batch(lesson: Any, changes: list[tuple[int, Decimal]], delay_ms: float, *,
                  repeat: int = 3) -> list[NetworkBatchRun]:
    """Each batch variant once, on a connection whose round trips take ``delay_ms`` longer (lesson 05).

    ``writes`` counts the reads of the client's socket the proxy delayed while the variant ran (the transaction's
    BEGIN, the check and the ROLLBACK excluded): one per round trip for a client that waits for each reply, and an
    unpredictable number, above its round trips, for a pipelining one (its writes may arrive one by one or together).
    The fastest of ``repeat`` runs is kept; ``writes`` is the most any run needed.
    """
    from helpers.latency import delayed_connection

    out = []
    with delayed_connection(lesson, delay_ms) as (conn, proxy):
        for name, fn in batch_variants().items():
            seen: list[int] = []

            def counted(c: psycopg.Connection, ch: list, fn: Callable = fn, seen: list[int] = seen) -> None:
                before = proxy.messages_up
                fn(c, ch)
                seen.append(proxy.messages_up - before)

            run = time_batch(conn, name, counted, changes, repeat=repeat)
            out.append(NetworkBatchRun(run, max(seen), delay_ms))
    return out


def plot_rates(runs: list[BatchRun], title: str) -> Any:
    """Display only: rows per second of each batch variant (its median run), as horizontal bars, each labelled with
    its ratio to the first variant's rate."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 2.8))
    ax.barh([r.name for r in runs][::-1], [r.rate for r in runs][::-1])
    for i, r in enumerate(runs[::-1]):
        ax.annotate(f" {r.rate / runs[0].rate:.1f}×", (r.rate, i), va="center", fontsize=9)
    ax.set_xlim(0, max(r.rate for r in runs) * 1.15)
    ax.set_xlabel("rows per second (median run)")
    ax.set_title(title)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    plt.close(fig)
    return fig


# ---------------------------------------------------------------------------------------------- exercises

def _one_statement(answer: str) -> str | None:
    """The statement without a trailing ';', or None if it holds several statements."""
    body = answer.strip().rstrip(";").strip()
    if ";" in re.sub(r"'(?:[^']|'')*'", "", body):
        return None
    return body


EX_AFTER = 400_000  # the exercise's cursor: the row at this position in (played_at, play_id) order


def _ex_cursor(conn: psycopg.Connection) -> tuple[Any, int]:
    """The cursor sits inside a tie: the first row of the first played_at shared by several plays, at or after
    position EX_AFTER. So a query that drops the tie-breaker (or compares the columns one by one) skips the tie's
    other rows and is refused, and one that uses >= repeats the cursor's row."""
    row = conn.execute("SELECT played_at, play_id FROM plays ORDER BY played_at, play_id LIMIT 1 OFFSET %s",
                       (min(EX_AFTER, _plays(conn) // 2),)).fetchone()
    for window in ("7 days", "10 years"):
        tie = conn.execute(
            "SELECT played_at, min(play_id) FROM plays WHERE played_at >= %s AND played_at < %s + %s::interval "
            "GROUP BY played_at HAVING count(*) > 1 ORDER BY played_at LIMIT 1", (row[0], row[0], window)).fetchone()
        if tie:
            return tie[0], tie[1]
    return row[0], row[1]


def keyset_cursor_offset(conn: Any) -> int:
    """How many plays come before the exercise's next page (the OFFSET that gives the same rows)."""
    at, pid = _ex_cursor(as_connection(conn))
    return int(as_connection(conn).execute(
        "SELECT count(*) FROM plays WHERE (played_at, play_id) <= (%s, %s)", (at, pid)).fetchone()[0])


_NEXT_PAGE = ("SELECT play_id, customer_id, track_id, played_at FROM plays WHERE {} "
              "ORDER BY played_at, play_id LIMIT 20")


def _keyset_mistake(conn: psycopg.Connection, body: str, got: list, at: Any, pid: int) -> str | None:
    """Name the classic keyset mistake whose rows the learner's query returned, if it is one of them."""
    rows = [tuple(r[:4]) for r in got]

    def same(where: str) -> bool:
        return rows == [tuple(r) for r in conn.execute(_NEXT_PAGE.format(where), {"at": at, "pid": pid}).fetchall()]

    ties = conn.execute("SELECT count(*) FROM plays WHERE played_at = %s AND play_id > %s", (at, pid)).fetchone()[0]
    if same("played_at > %(at)s") or same("played_at > %(at)s AND play_id > %(pid)s"):
        if re.search(r"\bplay_id\s*>", body, re.I) and not re.search(r"\)\s*>", body):
            return (f"Your query skips the {ties} other play(s) at the cursor's own time ({at}): comparing the "
                    "columns one by one (played_at > ... AND play_id > ...) is not \"after the cursor\", because a "
                    "play at the same time with a higher play_id comes next. Compare the pair: "
                    "WHERE (played_at, play_id) > (<cursor>).")
        return (f"Your query skips the {ties} other play(s) that share the cursor's played_at ({at}): "
                "played_at alone is not unique, so it needs its tie-breaker, play_id, in the WHERE clause too: "
                "WHERE (played_at, play_id) > (<cursor>).")
    if rows and rows[0][0] == pid:
        return ("Your page starts with the cursor's own row, the last row of the current page, so it would be shown "
                "twice: use > (strictly after the cursor), not >=.")
    return None


def _plays(conn: psycopg.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM plays").fetchone()[0])


def _setup_keyset(conn: psycopg.Connection) -> None:
    """Starting state: plays has only its primary key (drop any other index on plays)."""
    rows = conn.execute(
        "SELECT i.indexrelid::regclass::text FROM pg_index i "
        "WHERE i.indrelid = 'plays'::regclass AND NOT i.indisprimary").fetchall()
    for (name,) in rows:
        conn.execute(pgsql.SQL("DROP INDEX {}").format(pgsql.SQL(name)))


def _check_keyset(conn: psycopg.Connection, answer: Any) -> CheckResult:
    from helpers.plans import explain
    from helpers.widgets import one_line_error

    body = _one_statement(answer)
    if body is None:
        return CheckResult(False, "The answer should be one SQL query (no ';' between statements).")
    at, pid = _ex_cursor(conn)
    expected = conn.execute(
        "SELECT play_id, customer_id, track_id, played_at FROM plays WHERE played_at > %s "
        "OR (played_at = %s AND play_id > %s) ORDER BY played_at, play_id LIMIT 20", (at, at, pid)).fetchall()
    try:
        with conn.transaction(force_rollback=True):
            conn.execute("SET TRANSACTION READ ONLY")
            cur = conn.execute(body)
            if cur.description is None:
                return CheckResult(False, "That statement returns no rows; write a SELECT.")
            got = cur.fetchall()
            plan = explain(conn, body, analyze=True)
    except psycopg.Error as exc:
        return CheckResult(False, f"The query failed: {one_line_error(exc)}")
    if [tuple(r[:4]) for r in got] != [tuple(r) for r in expected]:
        mistake = _keyset_mistake(conn, body, got, at, pid)
        if mistake:
            return CheckResult(False, mistake)
        return CheckResult(
            False, f"The query returns {len(got)} rows, but not the 20 plays that come right after the cursor in "
                   "(played_at, play_id) order (columns play_id, customer_id, track_id, played_at). Hint: "
                   "WHERE (played_at, play_id) > (<cursor>) ORDER BY played_at, play_id LIMIT 20.")
    if "OFFSET" in body.upper():
        return CheckResult(False, "Right rows, but with OFFSET: the server still walks past every skipped row. "
                                  "Use the cursor in a WHERE clause instead.")
    pages = int(plan.root.raw.get("Shared Hit Blocks", 0)) + int(plan.root.raw.get("Shared Read Blocks", 0))
    if pages > 50:
        return CheckResult(
            False, f"Right rows, but the query touched {pages:,} pages ({', '.join(plan.node_types())}): it reads and "
                   "sorts the whole table. Hint: create the index the ORDER BY needs, on (played_at, play_id).")
    return CheckResult(True, f"The right 20 rows in {pages} pages ({', '.join(plan.node_types())}), "
                             "however deep the page is.")


register(Exercise(
    id="05.keyset_next_page",
    title="The next page, with a keyset cursor",
    prompt=(
        "The setup drops every index on plays except its primary key, and prints a cursor: the (played_at, "
        "play_id) of the last row of the current page. Write ONE query that returns the next 20 plays (columns "
        "play_id, customer_id, track_id, played_at, in (played_at, play_id) order) without OFFSET, and make it "
        "touch at most 50 pages. Give the query as a string (the cursor's values written into it)."
    ),
    setup_fn=_setup_keyset,
    checker=_check_keyset,
    answer_kind=str,
    answer_hint="one SQL query as a string, \"SELECT ...\"",
    lesson="05_query_patterns",
))


def keyset_cursor_text(conn: Any) -> str:
    """The exercise's cursor as SQL literals: ``('2024-...+00', 123)``."""
    at, pid = _ex_cursor(as_connection(conn))
    return f"('{at.isoformat(sep=' ')}', {pid})"


def _setup_upsert(conn: psycopg.Connection) -> None:
    conn.execute("DROP TABLE IF EXISTS ex_track_stats, ex_daily")
    conn.execute("CREATE TABLE ex_track_stats (track_id int PRIMARY KEY, plays int NOT NULL)")
    conn.execute("INSERT INTO ex_track_stats SELECT track_id, 100 + track_id % 50 FROM track WHERE track_id <= 600")
    conn.execute("CREATE TABLE ex_daily (track_id int NOT NULL, plays int NOT NULL)")
    # half of the day's tracks already have a row in ex_track_stats, half are new
    conn.execute("INSERT INTO ex_daily SELECT track_id, 1 + track_id % 9 FROM track "
                 "WHERE track_id BETWEEN 301 AND 900")


_EXPECTED_UPSERT = """
SELECT track_id, sum(plays) FROM (
    SELECT track_id, plays FROM ex_track_stats UNION ALL SELECT track_id, plays FROM ex_daily
) AS s GROUP BY track_id ORDER BY track_id"""


def _check_upsert(conn: psycopg.Connection, answer: Any) -> CheckResult:
    from helpers.widgets import one_line_error

    body = _one_statement(answer)
    if body is None:
        return CheckResult(False, "The answer should be ONE statement (no ';' between statements).")
    expected = conn.execute(_EXPECTED_UPSERT).fetchall()
    before = conn.execute("SELECT count(*) FROM ex_track_stats").fetchone()[0]
    try:
        with conn.transaction(force_rollback=True):
            conn.execute(body)
            got = conn.execute("SELECT track_id, plays FROM ex_track_stats ORDER BY track_id").fetchall()
    except psycopg.errors.AmbiguousColumn as exc:
        return CheckResult(False, f"The statement failed: {one_line_error(exc)}. In DO UPDATE two rows are in "
                                  "scope, the stored one and the proposed one, so a bare plays could be either: "
                                  "write ex_track_stats.plays for the stored value and EXCLUDED.plays for the day's.")
    except psycopg.errors.UniqueViolation as exc:
        return CheckResult(False, f"The statement failed: {one_line_error(exc)}: a plain INSERT stops at the first "
                                  "track that already has a row. Hint: INSERT ... ON CONFLICT (track_id) DO UPDATE "
                                  "SET ... handles the rows that already exist.")
    except psycopg.Error as exc:
        return CheckResult(False, f"The statement failed: {one_line_error(exc)}.")
    if got == [tuple(r) for r in expected]:
        return CheckResult(True, f"One statement merged {len(expected) - before} new tracks and added the plays of "
                                 f"the others ({len(expected)} rows). (The check ran it in a transaction that was "
                                 "rolled back, so you can try again.)")
    if len(got) == before:
        return CheckResult(False, f"ex_track_stats still has {len(got)} rows: the new tracks were not inserted.")
    old_rows = dict(conn.execute("SELECT track_id, plays FROM ex_track_stats").fetchall())
    known = [(t, p) for t, p in got if t in old_rows]
    if known and all(old_rows[t] == p for t, p in known):
        return CheckResult(False, "The new tracks are in, but the known tracks kept their old plays: DO NOTHING "
                                  "(or a condition that never matches) skips them. Hint: DO UPDATE SET plays = "
                                  "ex_track_stats.plays + EXCLUDED.plays.")
    return CheckResult(False, f"The result has {len(got)} rows but some plays are wrong. Hint: in DO UPDATE, "
                              "ex_track_stats.plays is the old value and EXCLUDED.plays the day's value: add them.")


register(Exercise(
    id="05.upsert_daily",
    title="Merge a day's plays with one upsert",
    prompt=(
        "ex_track_stats(track_id PRIMARY KEY, plays) holds play counts; ex_daily(track_id, plays) holds one day's "
        "counts, for tracks that are in ex_track_stats and tracks that are not. Write ONE statement that adds "
        "the day to ex_track_stats: new tracks are inserted, known tracks get their plays added. Give it as a "
        "string; the check runs it in a transaction and rolls it back."
    ),
    setup_fn=_setup_upsert,
    checker=_check_upsert,
    answer_kind=str,
    answer_hint="one SQL statement as a string, \"INSERT ...\"",
    lesson="05_query_patterns",
))
