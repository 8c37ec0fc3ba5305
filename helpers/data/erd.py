"""The ER diagram of a live database, read from the catalog (introduced in 00_start_here).

:func:`er_model` reads tables, primary-key and foreign-key columns and the foreign-key edges of the
``public`` schema; :func:`er_summary` prints them as stable text (nbval compares text, not images);
:func:`draw_er` draws them. The layout is computed from the model alone (no randomness): a table sits one
column to the right of the deepest table it references, and tables inside a column are ordered to keep
edges short. Every edge runs from the referencing column to the referenced key.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import psycopg


@dataclass
class Table:
    name: str
    columns: list[str]
    pk: list[str]
    fk_columns: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ForeignKey:
    name: str
    table: str
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]


def er_model(conn: psycopg.Connection, schema: str = "public") -> tuple[dict[str, Table], list[ForeignKey]]:
    """Tables (with all, primary-key and foreign-key columns) and foreign keys of ``schema``, sorted by name."""
    cols = conn.execute(
        """SELECT c.relname, a.attname
             FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
            WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND NOT c.relispartition
            ORDER BY c.relname, a.attnum""", (schema,)).fetchall()
    tables: dict[str, Table] = {}
    for rel, col in cols:
        tables.setdefault(rel, Table(rel, [], [])).columns.append(col)
    cons = conn.execute(
        """SELECT con.conname, con.contype, c.relname,
                  ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(n, i)
                        JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.i),
                  r.relname,
                  ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(n, i)
                        JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.i)
             FROM pg_constraint con
             JOIN pg_class c ON c.oid = con.conrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             LEFT JOIN pg_class r ON r.oid = con.confrelid
            WHERE n.nspname = %s AND con.contype IN ('p', 'f')
            ORDER BY c.relname, con.conname""", (schema,)).fetchall()
    fks: list[ForeignKey] = []
    for name, kind, rel, keys, ref, ref_keys in cons:
        if rel not in tables:
            continue
        if kind == "p":
            tables[rel].pk = list(keys)
        elif ref in tables:
            fks.append(ForeignKey(name, rel, tuple(keys), ref, tuple(ref_keys)))
            for k in keys:
                if k not in tables[rel].fk_columns:
                    tables[rel].fk_columns.append(k)
    return dict(sorted(tables.items())), sorted(fks, key=lambda f: (f.table, f.columns, f.ref_table))


def er_summary(conn: psycopg.Connection, schema: str = "public") -> str:
    """The diagram as text, one table per line with its key columns, then one line per foreign key.

    Introduced in 00_start_here. Deterministic, so a notebook can store it and nbval compare it.
    """
    tables, fks = er_model(conn, schema)
    lines = [f"{len(tables)} tables, {len(fks)} foreign keys"]
    for t in tables.values():
        keys = [f"{c} PK FK" if c in t.fk_columns else f"{c} PK" for c in t.pk]
        keys += [f"{c} FK" for c in t.fk_columns if c not in t.pk]
        lines.append(f"  {t.name} ({len(t.columns)} columns): {', '.join(keys) or 'no keys'}")
    for f in fks:
        lines.append(f"  {f.table}({', '.join(f.columns)}) -> {f.ref_table}({', '.join(f.ref_columns)})")
    return "\n".join(lines)


def layout(tables: dict[str, Table], fks: list[ForeignKey]) -> dict[object, tuple[int, int]]:
    """(column, row) of every table and of every waypoint of a long edge.

    A table's column is its depth in the reference graph (a table sits right of every table it references).
    An edge that skips columns gets one waypoint per column it crosses, which takes a slot of its own in
    that column, so the edge passes between boxes instead of through them. Rows are ordered by a few
    deterministic sweeps of the barycentre heuristic. Waypoints are keyed ``(fk.name, fk.table, column)``.
    """
    parents = {t: sorted({f.ref_table for f in fks if f.table == t and f.ref_table != t}) for t in tables}
    depth: dict[str, int] = {}

    def level(t: str, seen: tuple[str, ...] = ()) -> int:
        if t not in depth:
            ps = [p for p in parents[t] if p not in seen]
            depth[t] = 1 + max((level(p, seen + (t,)) for p in ps), default=-1)
        return depth[t]

    for t in tables:
        level(t)
    n_levels = max(depth.values(), default=-1) + 1
    col_of: dict[object, int] = dict(depth)
    left: dict[object, list] = {t: [] for t in tables}   # neighbours one column to the left
    right: dict[object, list] = {t: [] for t in tables}  # neighbours one column to the right
    for f in fks:
        if f.table == f.ref_table:
            continue
        chain: list[object] = [f.table]
        chain += [(f.name, f.table, c) for c in range(depth[f.table] - 1, depth[f.ref_table], -1)]
        chain.append(f.ref_table)
        for node in chain[1:-1]:
            col_of[node] = node[2]  # type: ignore[index]
            left.setdefault(node, [])
            right.setdefault(node, [])
        for a, b in zip(chain, chain[1:]):
            left[a].append(b)
            right[b].append(a)
    columns = [sorted((n for n in col_of if col_of[n] == i), key=_sort_key) for i in range(n_levels)]

    def positions() -> dict[object, float]:
        return {n: j - (len(col) - 1) / 2 for col in columns for j, n in enumerate(col)}

    def reorder(col: list, neighbours: dict[object, list], pos: dict[object, float]) -> list:
        def key(n):
            ys = [pos[m] for m in neighbours[n] if m in pos]
            return (sum(ys) / len(ys) if ys else pos[n], _sort_key(n))
        return sorted(col, key=key)

    for _ in range(3):
        for i in range(1, n_levels):
            columns[i] = reorder(columns[i], left, positions())
        for i in range(n_levels - 2, -1, -1):
            columns[i] = reorder(columns[i], right, positions())
    return {n: (i, j) for i, col in enumerate(columns) for j, n in enumerate(col)}


def _sort_key(node: object) -> tuple[str, str]:
    return (node, "") if isinstance(node, str) else (node[1], node[0])  # type: ignore[index]


def draw_er(conn: psycopg.Connection, schema: str = "public", max_columns_shown: int = 4):
    """Draw the ER diagram of ``schema`` from the live catalog; return a matplotlib Figure.

    Introduced in 00_start_here. Each box is a table with its primary-key (PK) and foreign-key (FK) columns
    and how many other columns it has; each arrow goes from a foreign-key column to the key it references.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    tables, fks = er_model(conn, schema)
    pos = layout(tables, fks)
    row_h, head_h, box_w, gap_x, gap_y, way_h = 0.30, 0.42, 3.0, 1.7, 0.40, 0.22

    def shown(t: Table) -> list[tuple[str, str]]:
        rows = [(c, "PK FK" if c in t.fk_columns else "PK") for c in t.pk]
        rows += [(c, "FK") for c in t.fk_columns if c not in t.pk]
        others = [c for c in t.columns if c not in t.pk and c not in t.fk_columns]
        rows += [(c, "") for c in others[:max(0, max_columns_shown - len(rows))]]
        hidden = len(t.columns) - len(rows)
        if hidden > 0:
            rows.append((f"+ {hidden} more column{'s' if hidden > 1 else ''}", "more"))
        return rows

    heights = {n: (head_h + row_h * len(shown(tables[n])) if isinstance(n, str) else way_h) for n in pos}
    n_cols = max((c for c, _ in pos.values()), default=0) + 1

    def col_nodes(c: int) -> list:
        return sorted((n for n in pos if pos[n][0] == c), key=lambda n: pos[n][1])

    def gap_after(a, b) -> float:
        return gap_y if isinstance(a, str) and isinstance(b, str) else gap_y / 2

    col_heights = []
    for c in range(n_cols):
        nodes = col_nodes(c)
        col_heights.append(sum(heights[n] for n in nodes) + sum(gap_after(a, b) for a, b in zip(nodes, nodes[1:])))
    total_h = max(col_heights, default=1.0)
    origin: dict[object, tuple[float, float]] = {}  # top-left corner of each box or waypoint slot
    for c in range(n_cols):
        y = total_h - (total_h - col_heights[c]) / 2
        nodes = col_nodes(c)
        for i, n in enumerate(nodes):
            origin[n] = (c * (box_w + gap_x), y)
            y -= heights[n] + (gap_after(n, nodes[i + 1]) if i + 1 < len(nodes) else 0)

    width = n_cols * box_w + (n_cols - 1) * gap_x
    fig = Figure(figsize=(max(6.0, width * 0.95), max(4.0, total_h * 0.95)), dpi=100)
    ax = fig.add_axes((0.01, 0.01, 0.98, 0.98))
    ax.set_xlim(-0.4, width + 0.4)
    ax.set_ylim(-0.4, total_h + 0.4)
    ax.set_axis_off()

    row_y: dict[tuple[str, str], float] = {}
    for name, t in tables.items():
        x, y = origin[name]
        h = heights[name]
        ax.add_patch(FancyBboxPatch((x, y - h), box_w, h, boxstyle="round,pad=0,rounding_size=0.08",
                                    facecolor="#f7f9fc", edgecolor="#35577d", linewidth=1.2, zorder=2))
        ax.add_patch(FancyBboxPatch((x, y - head_h), box_w, head_h, boxstyle="round,pad=0,rounding_size=0.08",
                                    facecolor="#35577d", edgecolor="#35577d", linewidth=1.2, zorder=2))
        ax.text(x + box_w / 2, y - head_h / 2, name, ha="center", va="center", color="white",
                fontsize=10, fontweight="bold", zorder=3)
        for i, (col, tag) in enumerate(shown(t)):
            cy = y - head_h - row_h * (i + 0.5)
            row_y[(name, col)] = cy
            style = {"fontsize": 8.5, "va": "center", "zorder": 3}
            if tag == "more":
                ax.text(x + 0.12, cy, col, color="#777777", style="italic", **style)
                continue
            ax.text(x + 0.12, cy, col, color="#1b1b1b",
                    fontweight="bold" if "PK" in tag else "normal", **style)
            if tag:
                ax.text(x + box_w - 0.12, cy, tag, ha="right", color="#b5532a" if "FK" in tag else "#35577d",
                        **style)

    line = {"color": "#b5532a", "linewidth": 0.9, "alpha": 0.85, "zorder": 1}
    for f in fks:
        (cx, cy0), (px, py0) = origin[f.table], origin[f.ref_table]
        y_from = row_y.get((f.table, f.columns[0]), cy0 - head_h / 2)
        y_to = row_y.get((f.ref_table, f.ref_columns[0]), py0 - head_h / 2)
        if f.table == f.ref_table:  # self-reference: a bracket outside the right edge
            out = cx + box_w + 0.35
            points = [(cx + box_w, y_from), (out, y_from), (out, y_to), (cx + box_w, y_to)]
        else:
            points = [(cx, y_from)]
            for c in range(pos[f.table][0] - 1, pos[f.ref_table][0], -1):
                wx, wy = origin[(f.name, f.table, c)]
                points += [(wx + box_w, wy - way_h / 2), (wx, wy - way_h / 2)]
            points.append((px + box_w, y_to))
        if len(points) > 2:
            xs, ys = zip(*points[:-1])
            ax.plot(xs, ys, solid_capstyle="round", **line)
        ax.add_patch(FancyArrowPatch(points[-2], points[-1], arrowstyle="-|>", mutation_scale=10,
                                     shrinkA=0, shrinkB=2, **line))
    return fig
