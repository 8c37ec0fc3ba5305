"""The before/after widget and the scale explorer: one change, measured (introduced in notebook 00).

Both are thin layers over :mod:`helpers.timing` and :mod:`helpers.plans`. Each has a plain method
that returns a result object (``BeforeAfter.run()``, ``ScaleExplorer.run()``) for notebooks and
tests to assert on, and buttons (``.run_button``, ``.revert_button``) that call the same method
and show the result in the widget. ``button.click()`` works without a browser, so nbval and
pytest exercise the buttons too.

Callbacks write into the Output widget with ``out.outputs = ()`` and ``out.append_stdout(...)``
(never ``with out:``), which behaves the same under nbconvert and nbval. Charts are PNG images.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import psycopg
from psycopg import sql as pgsql

from helpers.core.errors import WorkbookError
from helpers.db import FAILED_TRANSACTION_NOTE, recover
from helpers.fmt import fmt_ratio, fmt_time
from helpers.plans import Plan, PlanDiff, diff_plans, figure_png, plan_summary, png_figure
from helpers.timing import Comparison, Measurement, as_connection, compare, measure, measure_in_turns

__all__ = ["BeforeAfter", "BeforeAfterResult", "ScaleExplorer", "ScaleResult", "one_line_error"]

Change = str | Callable[[psycopg.Connection], Any]


CLOSED = ("This widget was created before the lesson was reset (re-running the lesson's first cell gives a new "
          "database and closes the old connection): re-run this widget's cell to make a new one.")


def _usable(conn: psycopg.Connection) -> None:
    """Before a widget touches the database: a closed connection gets one sentence, a failed transaction a rollback."""
    if conn.closed:
        raise WorkbookError(CLOSED)
    recover(conn)


def _lost(conn: psycopg.Connection, exc: BaseException) -> bool:
    return isinstance(exc, psycopg.OperationalError) and bool(conn.closed)


def one_line_error(exc: BaseException) -> str:
    """A learner-facing one-line message for an error from the server or a callable change."""
    if isinstance(exc, psycopg.Error):
        from helpers.db import explain_sql_error

        return explain_sql_error(exc)
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


# --------------------------------------------------------------------------------- applying changes

def _describe(change: Change | None) -> str:
    if change is None:
        return "(none)"
    if callable(change):
        doc = (change.__doc__ or "").strip().splitlines()
        name = getattr(change, "__name__", type(change).__name__)
        return f"{name}()" + (f": {doc[0]}" if doc else "")
    return " ".join(change.split())


def _run_change(conn: psycopg.Connection, change: Change) -> None:
    """Run a change atomically where PostgreSQL allows it.

    Inside a transaction first, so a failing change leaves nothing half-done; statements that
    refuse to run in a transaction (CREATE INDEX CONCURRENTLY, VACUUM) are retried on their own.
    """
    def once() -> None:
        if callable(change):
            change(conn)
        else:
            conn.execute(change)

    try:
        with conn.transaction():
            once()
    except psycopg.errors.ActiveSqlTransaction:
        once()


def _user_indexes(conn: psycopg.Connection) -> set[tuple[str, str]]:
    rows = conn.execute(
        """SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE c.relkind IN ('i', 'I') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
             AND n.nspname NOT LIKE 'pg_toast%%'"""
    ).fetchall()
    return {(r[0], r[1]) for r in rows}


# --------------------------------------------------------------------------------- before / after

@dataclass
class BeforeAfterResult:
    """One before/after measurement (returned by :meth:`BeforeAfter.run`)."""

    query: str
    params: Any
    change: str
    comparison: Comparison

    @property
    def before(self) -> Measurement:
        return self.comparison.before

    @property
    def after(self) -> Measurement:
        return self.comparison.after

    @property
    def ratio(self) -> float:
        """Speed-up, before ÷ after (median round trips)."""
        return self.comparison.ratio

    @property
    def before_plan(self) -> Plan:
        return self.before.plan

    @property
    def after_plan(self) -> Plan:
        return self.after.plan

    @property
    def plan_diff(self) -> PlanDiff:
        return diff_plans(self.before_plan, self.after_plan)

    def text(self) -> str:
        """What the widget prints: query, change, both measurements, the ratio, pages and the plan change."""
        params = f"  (params: {self.params!r})" if self.params is not None else ""
        return (
            f"Query:  {' '.join(self.query.split())}{params}\n"
            f"Change: {self.change}\n\n"
            f"{self.comparison.summary()}\n\n"
            f"Plan change:\n{self.plan_diff.text()}\n"
        )

    def __str__(self) -> str:
        return self.text()

    def figure(self) -> Any:
        """A small chart: median time with its IQR, and pages, before vs after (PNG in the widget)."""
        fig = png_figure(figsize=(7, 2.2), layout="constrained")
        t_ax, p_ax = fig.subplots(1, 2)
        names = ["before", "after"]
        meds = [m.median * 1000 for m in (self.before, self.after)]
        err = [[(m.median - m.q1) * 1000 for m in (self.before, self.after)],
               [(m.q3 - m.median) * 1000 for m in (self.before, self.after)]]
        t_ax.barh(names, meds, xerr=err, color=["tab:gray", "tab:blue"], capsize=3)
        t_ax.set_xlabel("median round trip (ms); whiskers: IQR, the middle half of the runs")
        t_ax.invert_yaxis()
        pages = [m.pages or 0 for m in (self.before, self.after)]
        p_ax.barh(names, pages, color=["tab:gray", "tab:orange"])
        p_ax.set_xlabel("pages touched (hit + read)")
        # A 100x change leaves the "after" bar invisible on a linear axis: switch to log and label the bars.
        q3s = [m.q3 * 1000 for m in (self.before, self.after)]
        for ax, values, ends, labels in ((t_ax, meds, q3s, [fmt_time(v / 1000) for v in meds]),
                                         (p_ax, pages, pages, [f"{v:,}" for v in pages])):
            positive = [v for v in values if v > 0]
            if len(positive) == 2 and max(positive) / min(positive) > 20:
                ax.set_xscale("log")
                ax.set_xlabel(ax.get_xlabel() + ", log scale")
            for y, (end, text) in enumerate(zip(ends, labels)):  # the label sits past the bar and its whisker
                ax.annotate(text, (end, y), xytext=(6, 0), textcoords="offset points", va="center", fontsize=8)
            ax.margins(x=0.35)
        p_ax.invert_yaxis()
        return fig


class BeforeAfter:
    """Time a query, apply a change, time it again; show both, the ratio, pages and the plan change.

    Introduced in notebook 00, used from notebook 03 on::

        w = BeforeAfter(db, "SELECT * FROM plays WHERE track_id = %s", params=(42,),
                        change="CREATE INDEX plays_track_id_idx ON plays (track_id)")
        w                      # the widget: edit the change, press "Measure before → after"
        r = w.run()            # the same without clicking, for asserts: r.ratio, r.after_plan

    ``change`` is SQL or a callable taking the psycopg connection. ``revert`` likewise; when it is
    omitted, reverting drops the indexes the change created (found by comparing the catalog before
    and after). A change runs in a transaction, so a failing one leaves nothing behind.
    """

    def __init__(
        self,
        conn_or_lesson: Any,
        query: str,
        change: Change | None = None,
        revert: Change | None = None,
        params: Any = None,
        *,
        warmup: int = 2,
        repeat: int = 7,
    ) -> None:
        import ipywidgets as w

        self.conn = as_connection(conn_or_lesson)
        self.params = params
        self.warmup, self.repeat = warmup, repeat
        self._change_fn = change if callable(change) else None
        self._revert: Change | None = revert
        self._created_indexes: set[tuple[str, str]] = set()
        self.applied = False
        self.result: BeforeAfterResult | None = None
        self.last_error: str | None = None

        layout = w.Layout(width="100%")
        self.query_box = w.Textarea(value=query, description="Query", layout=layout, rows=max(2, query.count("\n") + 1))
        if self._change_fn is None:
            self.change_box = w.Textarea(value=change or "", description="Change", layout=layout, rows=2)
        else:
            self.change_box = w.Textarea(value=_describe(change), description="Change", layout=layout, rows=1,
                                         disabled=True)
        self.run_button = w.Button(description="Measure before → after", button_style="primary",
                                   layout=w.Layout(width="auto"))
        self.revert_button = w.Button(description="Revert the change", disabled=True, layout=w.Layout(width="auto"))
        self.status = w.Label(value="Not measured yet.")
        self.out = w.Output()
        self.run_button.on_click(lambda _b: self._on_run())
        self.revert_button.on_click(lambda _b: self._on_revert())
        self.widget = w.VBox([self.query_box, self.change_box, w.HBox([self.run_button, self.revert_button]),
                              self.status, self.out])

    # -- display: the object shows as its widget
    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    @property
    def query(self) -> str:
        return self.query_box.value

    @property
    def change(self) -> Change | None:
        return self._change_fn if self._change_fn is not None else (self.change_box.value.strip() or None)

    # -- the plain API
    def run(self) -> BeforeAfterResult:
        """Measure before, apply the change, measure after; returns the result (raises WorkbookError).

        If the change is still applied from an earlier run it is reverted first, so "before"
        really is before.
        """
        change = self.change
        if change is None:
            raise WorkbookError("There is no change to measure: type one in the Change box (for example CREATE INDEX ...).")
        _usable(self.conn)
        if self.applied:
            self.revert()
        try:
            before = measure(self.conn, self.query, self.params, warmup=self.warmup, repeat=self.repeat)
        except psycopg.Error as exc:
            if _lost(self.conn, exc):
                raise WorkbookError(CLOSED) from None
            recover(self.conn, say=False)
            raise WorkbookError(f"The query failed, nothing was changed: {one_line_error(exc)}") from None
        self.apply()
        try:
            after = measure(self.conn, self.query, self.params, warmup=self.warmup, repeat=self.repeat)
        except psycopg.Error as exc:
            if _lost(self.conn, exc):
                raise WorkbookError(CLOSED) from None
            recover(self.conn, say=False)
            raise WorkbookError(
                f"The query failed after the change (which is still applied; revert it to undo): {one_line_error(exc)}"
            ) from None
        self.result = BeforeAfterResult(self.query, self.params, _describe(change), compare(before, after))
        return self.result

    def apply(self) -> None:
        """Apply the change (atomically where possible). On failure nothing is applied."""
        change = self.change
        if change is None:
            raise WorkbookError("There is no change to apply: type one in the Change box.")
        _usable(self.conn)
        seen = _user_indexes(self.conn)
        try:
            _run_change(self.conn, change)
        except Exception as exc:  # a learner's callable may raise anything
            if _lost(self.conn, exc):
                raise WorkbookError(CLOSED) from None
            recover(self.conn, say=False)
            message = one_line_error(exc)
            # outside a transaction (CREATE INDEX CONCURRENTLY) a failure can leave an invalid index: drop it
            leftovers = _user_indexes(self.conn) - seen
            if leftovers:
                self.conn.execute(pgsql.SQL("DROP INDEX IF EXISTS {}").format(
                    pgsql.SQL(", ").join(pgsql.Identifier(s, n) for s, n in sorted(leftovers))))
            raise WorkbookError(f"The change failed and was rolled back, nothing is applied: {message}") from None
        self._created_indexes = _user_indexes(self.conn) - seen
        self.applied = True

    def revert(self) -> None:
        """Undo the change: run ``revert``, or drop the indexes the change created."""
        if not self.applied:
            return
        _usable(self.conn)
        try:
            if self._revert is not None:
                _run_change(self.conn, self._revert)
            elif self._created_indexes:
                stmt = pgsql.SQL("DROP INDEX IF EXISTS {}").format(
                    pgsql.SQL(", ").join(pgsql.Identifier(s, n) for s, n in sorted(self._created_indexes)))
                _run_change(self.conn, stmt.as_string(self.conn))
            else:
                raise WorkbookError(
                    "This change cannot be undone automatically (it created no index): pass revert=... to BeforeAfter.")
        except WorkbookError:
            raise
        except Exception as exc:
            if _lost(self.conn, exc):
                raise WorkbookError(CLOSED) from None
            recover(self.conn, say=False)
            raise WorkbookError(f"Reverting failed, the change is still applied: {one_line_error(exc)}") from None
        self._created_indexes = set()
        self.applied = False

    # -- button callbacks: never raise, report in the widget
    def _show(self, text: str, image: bytes | None = None) -> None:
        self.out.outputs = ()
        self.out.append_stdout(text if text.endswith("\n") else text + "\n")
        if image is not None:
            from IPython.display import Image

            self.out.append_display_data(Image(data=image, format="png"))

    def _sync(self) -> None:
        self.revert_button.disabled = not self.applied
        self.status.value = "The change is applied: press “Revert the change” to undo it." if self.applied \
            else "The change is not applied."

    def _recovered(self) -> str:
        """Roll back a failed transaction before a button's work; the note goes into the widget, not the log."""
        if not self.conn.closed and recover(self.conn, say=False):
            return FAILED_TRANSACTION_NOTE + "\n"
        return ""

    def _on_run(self) -> None:
        self.last_error = None
        note = self._recovered()
        try:
            result = self.run()
        except Exception as exc:  # a button must not raise: the message goes into the widget
            self._error(exc, note)
        else:
            self._show(note + result.text(), figure_png(result.figure()))
        self._sync()

    def _error(self, exc: Exception, note: str = "") -> None:
        self.last_error = str(exc) if isinstance(exc, WorkbookError) else one_line_error(exc)
        self._show(f"{note}Error: {self.last_error}")

    def _on_revert(self) -> None:
        self.last_error = None
        note = self._recovered()
        try:
            self.revert()
        except Exception as exc:
            self._error(exc, note)
        else:
            self._show(note + "Reverted: the database is back to the state before the change.")
        self._sync()


# --------------------------------------------------------------------------------- scale explorer

DEFAULT_BUILD = (
    "CREATE TABLE {table} AS SELECT g AS id, g % 100 AS grp, lpad(g::text, 24, '0') AS label "
    "FROM generate_series(1, {n}) AS g"
)


@dataclass
class ScaleResult:
    """Timings of one query with and without a change over several table sizes."""

    sizes: list[int]
    before: list[Measurement]
    after: list[Measurement]
    change: str = ""  # the change, as the legend names it ("CREATE INDEX ON t (id)")

    @property
    def change_label(self) -> str:
        text = " ".join(self.change.split()) or "the change"
        return text if len(text) <= 48 else text[:47] + "…"

    @staticmethod
    def _slope(sizes: Sequence[int], ms: Sequence[Measurement]) -> float:
        xs = [math.log10(n) for n in sizes]
        ys = [math.log10(max(m.median, 1e-9)) for m in ms]
        if len(xs) < 2:
            return math.nan
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        den = sum((x - mx) ** 2 for x in xs)
        return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den

    @property
    def slope_before(self) -> float:
        """Slope of log(time) against log(rows) without the change: about 1 means linear growth."""
        return self._slope(self.sizes, self.before)

    @property
    def slope_after(self) -> float:
        """The same with the change: near 0 means the time hardly grows (logarithmic)."""
        return self._slope(self.sizes, self.after)

    @staticmethod
    def _plan_line(m: Measurement) -> str:
        return " > ".join(line.strip() for line in plan_summary(m.plan).splitlines()) if m.plan else "n/a"

    def text(self) -> str:
        """The numbers behind the chart: pages and plans plainly, times in the sanitized format."""
        lines = ["rows: pages without → with the change; plan without | with"]
        for n, b, a in zip(self.sizes, self.before, self.after):
            lines.append(f"{n:>9,}: pages {b.pages:,} → {a.pages:,}; {self._plan_line(b)} | {self._plan_line(a)}")
        lines.append("rows: median time without, with the change; speed-up")
        for n, b, a in zip(self.sizes, self.before, self.after):
            lines.append(f"{n:>9,}: {fmt_time(b.median)}, {fmt_time(a.median)}; {fmt_ratio(compare(b, a).ratio)}")
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        return self.text()

    def figure(self) -> Any:
        """Log-log plot of median time (with IQR) and pages against rows, with and without the change."""
        fig = png_figure(figsize=(8, 3), layout="constrained")
        t_ax, p_ax = fig.subplots(1, 2)
        for ms, label, color in ((self.before, f"without {self.change_label}", "tab:gray"),
                                 (self.after, f"with {self.change_label}", "tab:blue")):
            med = [m.median * 1000 for m in ms]
            err = [[(m.median - m.q1) * 1000 for m in ms], [(m.q3 - m.median) * 1000 for m in ms]]
            t_ax.errorbar(self.sizes, med, yerr=err, marker="o", label=label, color=color, capsize=3)
            p_ax.plot(self.sizes, [max(m.pages or 0, 1) for m in ms], marker="o", label=label, color=color)
        for ax, ylabel in ((t_ax, "median time (ms)"), (p_ax, "pages touched")):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("rows in the table")
            ax.set_ylabel(ylabel)
            ax.grid(True, which="both", alpha=0.3)
        t_ax.legend(fontsize=8)
        return fig


class ScaleExplorer:
    """The same query timed over several table sizes, with and without a change, on log-log axes.

    Introduced in notebook 03 (how cost grows with rows). ``query``, ``change`` and ``build`` are
    SQL templates: ``{table}`` is replaced by the table for each size (in its own schema) and, in
    ``build``, ``{n}`` by the row count. Write a literal brace as ``{{``. The schema is dropped
    after each run unless ``keep=True``::

        x = ScaleExplorer(db, "SELECT * FROM {table} WHERE id = 500", change="CREATE INDEX ON {table} (id)")
        r = x.run()
        assert r.slope_before > 0.6 and r.slope_after < 0.3
    """

    def __init__(
        self,
        conn_or_lesson: Any,
        query: str = "SELECT * FROM {table} WHERE id = 500",
        change: str = "CREATE INDEX ON {table} (id)",
        *,
        sizes: Sequence[int] = (1_000, 10_000, 100_000, 1_000_000),
        build: str = DEFAULT_BUILD,
        schema: str = "scale_explorer",
        warmup: int = 2,
        repeat: int = 5,
        keep: bool = False,
    ) -> None:
        import ipywidgets as w

        self.conn = as_connection(conn_or_lesson)
        self.query, self.change, self.build = query, change, build
        self.sizes = sorted(int(n) for n in sizes)
        self.schema, self.warmup, self.repeat, self.keep = schema, warmup, repeat, keep
        self.result: ScaleResult | None = None
        self.last_error: str | None = None
        self.run_button = w.Button(description="Build the tables and measure", button_style="primary",
                                   layout=w.Layout(width="auto"))
        self.status = w.Label(value=f"Sizes: {', '.join(f'{n:,}' for n in self.sizes)} rows.")
        self.out = w.Output()
        self.run_button.on_click(lambda _b: self._on_run())
        self.widget = w.VBox([w.HBox([self.run_button, self.status]), self.out])

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def _sql(self, template: str, table: pgsql.Composable, n: int | None = None) -> str:
        fields: dict[str, Any] = {"table": table}
        if n is not None:
            fields["n"] = pgsql.Literal(n)
        return pgsql.SQL(template).format(**fields).as_string(self.conn)  # type: ignore[arg-type]

    def drop(self) -> None:
        """Drop the explorer's schema and its tables."""
        self.conn.execute(pgsql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(pgsql.Identifier(self.schema)))

    def run(self) -> ScaleResult:
        """Build every size, time the query on each, apply the change to each, time them again; returns the
        result. The sizes' timed runs take turns (:func:`helpers.timing.measure_in_turns`)."""
        _usable(self.conn)
        try:
            self.drop()
            self.conn.execute(pgsql.SQL("CREATE SCHEMA {}").format(pgsql.Identifier(self.schema)))
            tables = [pgsql.Identifier(self.schema, f"t_{n}") for n in self.sizes]
            queries = [self._sql(self.query, table) for table in tables]
            for i, (n, table) in enumerate(zip(self.sizes, tables), 1):
                self.status.value = f"Building size {i} of {len(self.sizes)}: {n:,} rows…"
                self.conn.execute(self._sql(self.build, table, n))
                self.conn.execute(pgsql.SQL("ANALYZE {}").format(table))
            # The sizes take turns, run by run, so that a busy moment on the machine slows one run of several
            # sizes rather than every run of one: the slope across sizes stays a property of the data.
            self.status.value = "Timing every size without the change…"
            before = measure_in_turns(self.conn, queries, warmup=self.warmup, repeat=self.repeat)
            for i, table in enumerate(tables, 1):
                self.status.value = f"Applying the change to size {i} of {len(self.sizes)}…"
                _run_change(self.conn, self._sql(self.change, table))
                self.conn.execute(pgsql.SQL("ANALYZE {}").format(table))
            self.status.value = "Timing every size with the change…"
            after = measure_in_turns(self.conn, queries, warmup=self.warmup, repeat=self.repeat)
        except psycopg.Error as exc:
            if _lost(self.conn, exc):
                raise WorkbookError(CLOSED) from None
            recover(self.conn, say=False)
            raise WorkbookError(f"The scale explorer stopped: {one_line_error(exc)}") from None
        except (KeyError, IndexError, ValueError) as exc:
            raise WorkbookError(
                f"A SQL template has a placeholder other than {{table}} or {{n}} ({exc}); write literal braces as {{{{ }}}}."
            ) from None
        finally:
            if not self.keep and not self.conn.closed:
                try:
                    recover(self.conn, say=False)
                    self.drop()
                except psycopg.Error:
                    pass
        self.status.value = f"Measured {', '.join(f'{n:,}' for n in self.sizes)} rows."
        self.result = ScaleResult(self.sizes, before, after, self.change.replace("{table}", "t"))
        return self.result

    def _on_run(self) -> None:
        self.last_error = None
        self.out.outputs = ()
        if not self.conn.closed and recover(self.conn, say=False):
            self.out.append_stdout(FAILED_TRANSACTION_NOTE + "\n")
        try:
            result = self.run()
        except Exception as exc:  # a button must not raise: the message goes into the widget
            self.last_error = str(exc) if isinstance(exc, WorkbookError) else one_line_error(exc)
            self.out.append_stdout(f"Error: {self.last_error}\n")
            self.status.value = "Stopped by the error below."
            return
        from IPython.display import Image

        self.out.append_stdout(result.text())
        self.out.append_display_data(Image(data=figure_png(result.figure()), format="png"))
