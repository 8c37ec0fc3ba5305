"""Query plans: EXPLAIN as a parsed tree, checks on it, a stable summary, a picture and a diff.

Introduced in notebook 03 (indexing: reading EXPLAIN) and used by every lesson that shows a plan.

- :func:`explain` runs ``EXPLAIN (FORMAT JSON)`` (optionally with ``ANALYZE, BUFFERS``) and returns
  a :class:`Plan`.
- :func:`uses_index`, :func:`has_seq_scan`, :meth:`Plan.node_types` are the checks notebooks and
  tests assert on.
- :func:`plan_summary` is a stable text (node types, relations, indexes; no costs, no times) that
  is the same on PostgreSQL 15 and 18 when the plan shape is the same: print it next to raw
  EXPLAIN output, which belongs in an ``nbval-ignore-output`` cell.
- :func:`draw_plan` draws the tree with each node's own time and pages as bars (a matplotlib
  ``Figure``, shown as PNG); :func:`diff_plans` marks what changed between two plans.
"""
from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

__all__ = [
    "Plan",
    "PlanNode",
    "PlanDiff",
    "explain",
    "uses_index",
    "has_seq_scan",
    "plan_summary",
    "draw_plan",
    "diff_plans",
    "draw_plan_diff",
    "figure_png",
    "png_figure",
]


@dataclass
class PlanNode:
    """One node of a plan: its JSON object and its children."""

    raw: dict[str, Any]
    children: list["PlanNode"] = field(default_factory=list)
    processes: int = 1  # processes sharing this node's loops (workers + leader under a Gather)

    @property
    def node_type(self) -> str:
        return str(self.raw.get("Node Type", "?"))

    @property
    def relation(self) -> str | None:
        return self.raw.get("Relation Name")

    @property
    def index(self) -> str | None:
        return self.raw.get("Index Name")

    @property
    def parallel(self) -> bool:
        return bool(self.raw.get("Parallel Aware"))

    def label(self) -> str:
        """``Index Scan using t_k_idx on t``: type, index and relation (stable across versions)."""
        name = ("Parallel " if self.parallel else "") + self.node_type
        strategy = self.raw.get("Strategy")
        if self.node_type == "Aggregate" and strategy and strategy != "Plain":
            name += f" ({strategy})"
        join = self.raw.get("Join Type")
        if join and join != "Inner":
            name += f" ({join})"
        if self.index:
            name += f" using {self.index}"
        if self.relation:
            name += f" on {self.relation}"
        elif self.raw.get("CTE Name"):
            name += f" on {self.raw['CTE Name']}"
        return name

    @property
    def total_ms(self) -> float | None:
        """Inclusive actual time of this node over all its loops, as wall time (analyze only).

        Under a Gather the loops are shared by the workers and the leader, which run at the same
        time, so the sum over loops is divided by the number of processes.
        """
        t = self.raw.get("Actual Total Time")
        if t is None:
            return None
        return float(t) * float(self.raw.get("Actual Loops", 1) or 1) / self.processes

    @property
    def own_ms(self) -> float | None:
        """Time spent in this node itself: its total minus its children's totals (never below 0)."""
        total = self.total_ms
        if total is None:
            return None
        kids = sum(c.total_ms or 0.0 for c in self.children)
        return max(total - kids, 0.0)

    @property
    def pages(self) -> int:
        """Shared pages (hit + read) touched by this node including its children."""
        return int(self.raw.get("Shared Hit Blocks", 0)) + int(self.raw.get("Shared Read Blocks", 0))

    @property
    def own_pages(self) -> int:
        """Shared pages touched by this node alone (its total minus its children's)."""
        return max(self.pages - sum(c.pages for c in self.children), 0)

    def walk(self, depth: int = 0) -> Iterator[tuple[int, "PlanNode"]]:
        """This node and all below it, depth first, with their depth."""
        yield depth, self
        for c in self.children:
            yield from c.walk(depth + 1)


@dataclass
class Plan:
    """A parsed ``EXPLAIN (FORMAT JSON)`` result (lesson 03)."""

    root: PlanNode
    raw: dict[str, Any]
    analyzed: bool

    @property
    def execution_ms(self) -> float | None:
        return self.raw.get("Execution Time")

    @property
    def planning_ms(self) -> float | None:
        return self.raw.get("Planning Time")

    def nodes(self) -> list[PlanNode]:
        """All nodes, depth first from the root."""
        return [n for _, n in self.root.walk()]

    def node_types(self) -> list[str]:
        """The distinct node types present, sorted (``["Index Scan", "Nested Loop"]``)."""
        return sorted({n.node_type for n in self.nodes()})

    def index_names(self) -> list[str]:
        """The distinct indexes the plan uses, sorted."""
        return sorted({n.index for n in self.nodes() if n.index})

    def summary(self) -> str:
        return plan_summary(self)

    def __str__(self) -> str:
        return plan_summary(self)

    @classmethod
    def from_json(cls, data: Any) -> "Plan":
        """Build from EXPLAIN's JSON (the list it returns, its first element, or a JSON string)."""
        if isinstance(data, str):
            data = json.loads(data)
        if isinstance(data, list):
            data = data[0]
        return cls(root=_build(data["Plan"]), raw=data, analyzed="Execution Time" in data)


def _build(node: dict[str, Any], processes: int = 1) -> PlanNode:
    if node.get("Node Type") in ("Gather", "Gather Merge"):
        launched = node.get("Workers Launched", node.get("Workers Planned", 0)) or 0
        below = int(launched) + 1
    else:
        below = processes
    return PlanNode(raw=node, children=[_build(c, below) for c in node.get("Plans", [])], processes=processes)


def explain(conn: Any, query: str, params: Any = None, analyze: bool = False) -> Plan:
    """EXPLAIN ``query`` and return the parsed :class:`Plan` (lesson 03).

    With ``analyze=True`` the query really runs (with ``BUFFERS``), inside a transaction that is
    rolled back, so an ``UPDATE`` or ``DELETE`` being explained changes nothing.
    """
    from helpers.db import as_connection

    conn = as_connection(conn)
    options = "ANALYZE, BUFFERS, FORMAT JSON" if analyze else "FORMAT JSON"
    statement = f"EXPLAIN ({options}) {query}"
    with conn.transaction(force_rollback=True), conn.cursor() as cur:
        cur.execute(statement, params, prepare=False)
        row = cur.fetchone()
    assert row is not None
    return Plan.from_json(row[0])


def uses_index(plan: Plan, name: str) -> bool:
    """True if any node of ``plan`` reads the index ``name`` (index, index-only or bitmap scan)."""
    return any(n.index == name for n in plan.nodes())


def has_seq_scan(plan: Plan, table: str) -> bool:
    """True if ``plan`` reads ``table`` with a sequential scan (parallel or not).

    ``table`` may be schema-qualified; only the table name is compared, since the plan's JSON
    names the schema only with ``VERBOSE``.
    """
    name = table.rsplit(".", 1)[-1]
    return any(n.node_type == "Seq Scan" and n.relation == name for n in plan.nodes())


def plan_summary(plan: Plan) -> str:
    """The plan as an indented tree of node labels: no costs, rows or times, so it is stable.

    Example::

        Nested Loop
          Seq Scan on artist
          Index Scan using album_artist_id_idx on album
    """
    return "\n".join("  " * depth + node.label() for depth, node in plan.root.walk())


@dataclass
class PlanDiff:
    """What changed between two plans, by node label (see :func:`diff_plans`)."""

    lines: list[tuple[str, str]]  # (mark, indented label): mark is " ", "-" (only in a) or "+" (only in b)

    @property
    def changed(self) -> bool:
        return any(mark != " " for mark, _ in self.lines)

    @property
    def removed(self) -> list[str]:
        return [text.strip() for mark, text in self.lines if mark == "-"]

    @property
    def added(self) -> list[str]:
        return [text.strip() for mark, text in self.lines if mark == "+"]

    def text(self) -> str:
        """One line per node: ``- `` only before, ``+ `` only after, two spaces when unchanged."""
        if not self.changed:
            return "plan unchanged:\n" + "\n".join(f"  {t}" for _, t in self.lines)
        return "\n".join(f"{mark} {t}" for mark, t in self.lines)

    def __str__(self) -> str:
        return self.text()


def diff_plans(a: Plan, b: Plan) -> PlanDiff:
    """Compare two plans' summaries line by line (lesson 03): ``-`` before only, ``+`` after only."""
    la, lb = plan_summary(a).splitlines(), plan_summary(b).splitlines()
    lines: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=la, b=lb, autojunk=False).get_opcodes():
        if op == "equal":
            lines += [(" ", t) for t in la[i1:i2]]
        else:
            lines += [("-", t) for t in la[i1:i2]]
            lines += [("+", t) for t in lb[j1:j2]]
    return PlanDiff(lines)


# --- pictures ---------------------------------------------------------------------------------

def png_figure(**kwargs: Any) -> Any:
    """A matplotlib Figure that a notebook shows as PNG when it is a cell's value.

    Built without pyplot (nothing global changes, nothing accumulates in pyplot's figure list).
    A bare ``Figure`` would show only as ``<Figure size ...>`` unless pyplot was imported, so this
    one carries its own ``_repr_png_``.
    """
    from matplotlib.figure import Figure as _Figure

    class Figure(_Figure):  # same name, so its text form stays "<Figure size ... with N Axes>"
        def _repr_png_(self) -> bytes:
            return figure_png(self)

    return Figure(**kwargs)


def _short(label: str, width: int = 48) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def _draw_into(
    fig: Any, plan: Plan, gridspec: Any, title: str | None, marks: Sequence[str] | None = None, share: Any = None
) -> Any:
    rows = list(plan.root.walk())
    labels = ["    " * d + _short(n.label()) for d, n in rows]
    y = list(range(len(rows)))
    tree_ax = fig.add_subplot(gridspec[0])
    time_ax = fig.add_subplot(gridspec[1], sharey=tree_ax, sharex=share[0] if share else None)
    page_ax = fig.add_subplot(gridspec[2], sharey=tree_ax, sharex=share[1] if share else None)
    tree_ax.set_xlim(0, 1)
    tree_ax.set_ylim(len(rows) - 0.5, -0.5)
    tree_ax.axis("off")
    for i, (label, (_, node)) in enumerate(zip(labels, rows)):
        color = "black"
        if marks is not None and marks[i] != " ":
            color = "tab:red" if marks[i] == "-" else "tab:green"
        tree_ax.text(0.0, i, label, va="center", ha="left", family="monospace", fontsize=9, color=color)
    if title:
        tree_ax.set_title(title, loc="left", fontsize=10)
    if plan.analyzed:
        own = [n.own_ms or 0.0 for _, n in rows]
        time_ax.barh(y, own, color="tab:blue")
        time_ax.set_xlabel("own time (ms)")
    else:
        cost = [float(n.raw.get("Total Cost", 0.0)) for _, n in rows]
        time_ax.barh(y, cost, color="tab:gray")
        time_ax.set_xlabel("estimated total cost")
    pages = [n.own_pages for _, n in rows]
    page_ax.barh(y, pages, color="tab:orange")
    page_ax.set_xlabel("own pages (hit + read)" if plan.analyzed else "pages (analyze to see)")
    for ax in (time_ax, page_ax):
        ax.tick_params(axis="y", left=False, labelleft=False)
        ax.grid(axis="x", alpha=0.3)
    return time_ax, page_ax


def draw_plan(plan: Plan, title: str | None = None) -> Any:
    """Draw ``plan`` as a tree with each node's own time and pages as bars (lesson 03).

    Returns a ``matplotlib.figure.Figure`` (see :func:`png_figure`): as a cell's value, or with
    ``display(fig)``, it shows as PNG. Without ANALYZE the time bars show the planner's estimated
    cost instead.
    """
    n = len(plan.nodes())
    fig = png_figure(figsize=(10, 1.0 + 0.3 * n), layout="constrained")
    gs = fig.add_gridspec(1, 3, width_ratios=[2, 1, 1])
    _draw_into(fig, plan, [gs[0, 0], gs[0, 1], gs[0, 2]], title)
    return fig


def draw_plan_diff(a: Plan, b: Plan) -> Any:
    """Both plans one above the other; nodes only in the first are red, only in the second green."""
    d = diff_plans(a, b)
    marks_a = [m for m, _ in d.lines if m != "+"]
    marks_b = [m for m, _ in d.lines if m != "-"]
    na, nb = len(a.nodes()), len(b.nodes())
    fig = png_figure(figsize=(10, 2.0 + 0.3 * (na + nb)), layout="constrained")
    gs = fig.add_gridspec(2, 3, width_ratios=[2, 1, 1], height_ratios=[na + 1, nb + 1])
    axes = _draw_into(fig, a, [gs[0, 0], gs[0, 1], gs[0, 2]], "before", marks_a)
    _draw_into(fig, b, [gs[1, 0], gs[1, 1], gs[1, 2]], "after", marks_b, share=axes)
    return fig


def figure_png(fig: Any, dpi: int = 90) -> bytes:
    """A figure's PNG bytes (for widgets, which display images rather than figures)."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
