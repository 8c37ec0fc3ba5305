"""The measurement core: time a statement, read the server's own figures, compare two variants.

Introduced in notebook 00 (the tour of the timing widget) and used by every lesson that makes a
performance claim. This module has no widgets and no display code: :mod:`helpers.widgets` is a
thin layer over it, and ``tests/test_timing.py`` tests it directly.

What one measurement holds:

- the client round trip (execute + fetch all rows) timed ``repeat`` times after ``warmup``
  untimed runs: median, inter-quartile range, min and max, and the repeat count;
- the server's own view, from ``EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)`` run once, *after*
  the timed runs and inside a transaction that is always rolled back (so it neither slows the
  timed runs down nor leaves changes behind): execution and planning time, shared pages hit and
  read, and the rows the top plan node returned.

Timings vary from run to run and are always printed through :mod:`helpers.fmt` so that nbval's
sanitizer can mask them. Pages (hit + read) and rows are deterministic for a given data set and
plan, and are printed plainly. The split between *hit* and *read* depends on what is cached, so
the summaries print only the total; the split is kept on the object.

psycopg and prepared statements
-------------------------------
psycopg 3 prepares a statement on the server automatically once the same query text has been
executed ``prepare_threshold`` times (5 by default). A timer that repeats a query 9 times would
therefore time a mix of unprepared runs (parse + plan + execute) and prepared runs (execute
only), and the plan it times could even differ from the one EXPLAIN shows: a prepared statement
with parameters may switch to a generic plan after five executions. :func:`measure` avoids the
mix by passing ``prepare=False`` by default, so every timed run is parsed and planned exactly as
a one-off query: a query without parameters then goes by the simple protocol, like psql and
``pgbench -n -f`` send it, and one with parameters by the extended protocol with an unnamed
statement (``pgbench -M extended``). Pass ``prepare=True`` to time the prepared path instead;
the warm-up runs then prepare it, so every timed run uses it (``pgbench -M prepared``).
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import psycopg

from helpers.db import as_connection
from helpers.fmt import fmt_ratio, fmt_ratio_range, fmt_time
from helpers.plans import explain as explain_plan

__all__ = ["Measurement", "Comparison", "ServerFigures", "measure", "compare", "server_figures", "as_connection",
           "taking_turns", "measure_in_turns"]


@dataclass(frozen=True)
class ServerFigures:
    """What the server reports for one execution (``EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)``)."""

    execution_s: float
    planning_s: float
    shared_hit: int
    shared_read: int
    rows: int

    @property
    def pages(self) -> int:
        """Shared buffer pages touched (hit + read): deterministic for a given plan and data."""
        return self.shared_hit + self.shared_read


@dataclass(frozen=True)
class Measurement:
    """One statement timed on the client, with the server's figures next to it (lesson 00)."""

    query: str
    params: Any
    times_s: tuple[float, ...]
    warmup: int
    rows_returned: int
    server: ServerFigures | None = None
    plan: Any = field(default=None, repr=False, compare=False)  # helpers.plans.Plan when explain=True

    @property
    def n(self) -> int:
        """How many timed repeats the figures are based on."""
        return len(self.times_s)

    @property
    def median(self) -> float:
        """Median client round trip in seconds."""
        return statistics.median(self.times_s)

    @property
    def min(self) -> float:
        return min(self.times_s)

    @property
    def max(self) -> float:
        return max(self.times_s)

    @property
    def q1(self) -> float:
        """Lower quartile of the round trips (the min when there are fewer than 4 repeats)."""
        return _quartiles(self.times_s)[0]

    @property
    def q3(self) -> float:
        """Upper quartile of the round trips (the max when there are fewer than 4 repeats)."""
        return _quartiles(self.times_s)[1]

    @property
    def pages(self) -> int | None:
        """Shared pages touched by one execution (from EXPLAIN), or None without explain."""
        return self.server.pages if self.server else None

    def time_text(self) -> str:
        """``26.1 ms median (IQR 25.8 ms–26.5 ms, n=7)``: the clock part, in the sanitized format."""
        spread = "IQR" if self.n >= 4 else "min–max"
        return f"{fmt_time(self.median)} median ({spread} {fmt_time(self.q1)}–{fmt_time(self.q3)}, n={self.n})"

    def work_text(self) -> str:
        """``pages 4,425, rows 1``: the deterministic part (pages from EXPLAIN, rows fetched)."""
        pages = f"pages {self.pages:,}" if self.server else "pages n/a"
        return f"{pages}, rows {self.rows_returned:,}"

    def clock_text(self) -> str:
        """The client's time and, next to it, the server's own execution time (from EXPLAIN ANALYZE)."""
        server = f", server {fmt_time(self.server.execution_s)}" if self.server else ""
        return f"{self.time_text()}{server}"

    def summary(self) -> str:
        """Two lines: work (deterministic) then time (client median and spread, server time)."""
        return f"{self.work_text()}\n{self.clock_text()}"

    def __str__(self) -> str:
        return self.summary()


@dataclass(frozen=True)
class Comparison:
    """Before vs after: the speed-up ``before.median / after.median`` with a range from the spreads."""

    before: Measurement
    after: Measurement

    @property
    def ratio(self) -> float:
        """Speed-up of *after* over *before*: above 1 means after is faster."""
        return _safe_div(self.before.median, self.after.median)

    @property
    def low(self) -> float:
        """Pessimistic end of the speed-up: before's lower quartile over after's upper quartile."""
        return _safe_div(self.before.q1, self.after.q3)

    @property
    def high(self) -> float:
        """Optimistic end of the speed-up: before's upper quartile over after's lower quartile."""
        return _safe_div(self.before.q3, self.after.q1)

    @property
    def verdict(self) -> str:
        """``faster``, ``slower`` or ``unclear`` (when the range includes 1). Not printed: it can flip."""
        if self.low > 1:
            return "faster"
        if self.high < 1:
            return "slower"
        return "unclear"

    @property
    def pages_before(self) -> int | None:
        return self.before.pages

    @property
    def pages_after(self) -> int | None:
        return self.after.pages

    @property
    def server_ratio(self) -> float:
        """Speed-up by the server's execution times (one EXPLAIN ANALYZE each)."""
        if not (self.before.server and self.after.server):
            return math.nan
        return _safe_div(self.before.server.execution_s, self.after.server.execution_s)

    def ratio_text(self) -> str:
        """``speed-up (before ÷ after) 41× (38×–44×)``. Neutral wording, so the text cannot flip."""
        return f"speed-up (before ÷ after) {fmt_ratio(self.ratio)} ({fmt_ratio_range(self.low, self.high)})"

    def pages_text(self) -> str:
        """``pages 4,425 → 4`` (deterministic)."""
        if self.pages_before is None or self.pages_after is None:
            return "pages n/a"
        return f"pages {self.pages_before:,} → {self.pages_after:,}"

    def summary(self) -> str:
        """Before, after, then the ratio and the pages on one line."""
        return (
            f"before: {self.before.work_text()}\n        {self.before.clock_text()}\n"
            f"after:  {self.after.work_text()}\n        {self.after.clock_text()}\n"
            f"{self.ratio_text()}; {self.pages_text()}"
        )

    def __str__(self) -> str:
        return self.summary()


def measure(
    conn: Any,
    query: str,
    params: Sequence[Any] | dict[str, Any] | None = None,
    *,
    warmup: int = 2,
    repeat: int = 7,
    explain: bool = True,
    prepare: bool = False,
) -> Measurement:
    """Time ``query`` on ``conn`` (a psycopg autocommit connection or a Lesson): lesson 00.

    Runs it ``warmup`` times untimed, then ``repeat`` times timed (execute + fetch all), then,
    if ``explain``, once more under ``EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)`` in a transaction
    that is rolled back. ``prepare=False`` keeps every run unprepared (see the module docstring).
    Meant for reads; a data-changing statement would be applied ``warmup + repeat`` times.
    """
    if repeat < 1:
        raise ValueError("repeat must be at least 1")
    conn = as_connection(conn)
    times: list[float] = []
    rows_returned = 0
    with conn.cursor() as cur:
        for i in range(warmup + repeat):
            elapsed, rows_returned = _run_once(cur, query, params, prepare)
            if i >= warmup:
                times.append(elapsed)
    server = plan = None
    if explain:

        plan = explain_plan(conn, query, params, analyze=True)
        server = server_figures(plan)
    return Measurement(query, params, tuple(times), warmup, rows_returned, server, plan)


def _run_once(cur: psycopg.Cursor, query: str, params: Any, prepare: bool) -> tuple[float, int]:
    """One timed run (execute + fetch all): its seconds and the rows it returned (or changed)."""
    t0 = time.perf_counter()
    cur.execute(query, params, prepare=prepare)
    rows = cur.fetchall() if cur.description is not None else []
    elapsed = time.perf_counter() - t0
    return elapsed, len(rows) if cur.description is not None else max(cur.rowcount, 0)


def measure_in_turns(conn: Any, queries: Sequence[str], *, warmup: int = 2, repeat: int = 7,
                     explain: bool = True) -> list[Measurement]:
    """:func:`measure` for each of ``queries``, their timed runs taking turns (:func:`taking_turns`), one
    :class:`Measurement` per query in the same order (notebook 03's scale explorer).

    A busy moment on the machine then slows one run of several queries rather than every run of one, so their
    fastest and median runs stay comparable on a shared machine. Each query is warmed up (``warmup`` untimed runs)
    before any is timed, and explained once after all are timed.
    """
    if repeat < 1:
        raise ValueError("repeat must be at least 1")
    conn = as_connection(conn)
    times: list[list[float]] = [[] for _ in queries]
    rows_returned = [0] * len(queries)
    with conn.cursor() as cur:
        for i in [*range(len(queries))] * warmup:
            _run_once(cur, queries[i], None, False)
        for i in taking_turns(range(len(queries)), repeat):
            elapsed, rows_returned[i] = _run_once(cur, queries[i], None, False)
            times[i].append(elapsed)
    result = []
    for i, query in enumerate(queries):
        plan = explain_plan(conn, query, None, analyze=True) if explain else None
        result.append(Measurement(query, None, tuple(times[i]), warmup, rows_returned[i],
                                  server_figures(plan) if plan is not None else None, plan))
    return result


def server_figures(plan: Any) -> ServerFigures:
    """Execution/planning time, pages and rows from an analyzed :class:`helpers.plans.Plan`."""
    root = plan.root
    return ServerFigures(
        execution_s=(plan.execution_ms or 0.0) / 1000.0,
        planning_s=(plan.planning_ms or 0.0) / 1000.0,
        shared_hit=int(root.raw.get("Shared Hit Blocks", 0)),
        shared_read=int(root.raw.get("Shared Read Blocks", 0)),
        rows=int(round(float(root.raw.get("Actual Rows", 0)) * float(root.raw.get("Actual Loops", 1) or 1))),
    )


def compare(before: Measurement, after: Measurement) -> Comparison:
    """The speed-up of ``after`` over ``before`` with its range (lesson 00)."""
    return Comparison(before, after)


def taking_turns(names: Sequence[Any], rounds: int) -> Iterator[Any]:
    """Each of ``names`` once per round, ``rounds`` times, round r starting with the r-th: variants timed this way
    share a change of load on the machine, and none always runs first or last (lessons 05 and 11)."""
    names = list(names)
    for r in range(rounds):
        k = r % len(names)
        yield from names[k:] + names[:k]


def _quartiles(values: Sequence[float]) -> tuple[float, float]:
    if len(values) < 4:
        return min(values), max(values)
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def _safe_div(a: float, b: float) -> float:
    if b <= 0:
        return math.inf if a > 0 else math.nan
    return a / b
