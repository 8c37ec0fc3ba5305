"""Count the SQL statements an ORM sends, and group them by shape (introduced in notebook 04, N+1).

::

    with count_statements(db.engine) as stats:
        for artist in session.scalars(select(Artist)):
            artist.albums            # lazy load: one SELECT per artist
    print(stats.report())
    # 276 statements in 276 round trips: 1 x SELECT artist + 275 x SELECT album WHERE artist_id = ?

It listens to SQLAlchemy's ``before_cursor_execute`` event on the engine for the duration of the
block (and removes the listener afterwards). Literals and parameters are replaced by ``?`` so
that the same lookup with different values falls into one group.

Counting rules: ``count`` is the number of statements the server executes (an ``executemany``
with 100 parameter sets counts 100); ``round_trips`` is the number of calls to the driver
(psycopg 3 sends an ``executemany`` as one pipeline, so it counts as one). Transaction control
(the driver's own BEGIN, COMMIT, ROLLBACK) is counted separately in ``commits``/``rollbacks``.
"""
from __future__ import annotations

import contextlib
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator

__all__ = ["StatementLog", "count_statements", "normalize_sql", "shape_label"]

_STRING = re.compile(r"'(?:[^']|'')*'")
_PARAM = re.compile(r"%\([^)]+\)s|%s|\$\d+|(?<![:\w]):[A-Za-z_]\w*")
_CAST = re.compile(r"\?::[A-Za-z_]\w*(?:\[\])?")
_FLIP = re.compile(r"(?<![\w.])\?\s*=\s*([A-Za-z_][\w.]*)")
_NUMBER = re.compile(r"(?<![\w.$])-?\d+(?:\.\d+)?(?![\w.])")
_LIST = re.compile(r"\(\s*\?(?:\s*,\s*\?)+\s*\)")
_VALUES = re.compile(r"VALUES\s*(\(\s*[?\s,]+\))(?:\s*,\s*\(\s*[?\s,]+\))+", re.IGNORECASE)
_POSTCOMPILE = re.compile(r"\(?__\[POSTCOMPILE_\w+\]\)?")
_SPACE = re.compile(r"\s+")


def normalize_sql(statement: str) -> str:
    """The statement's shape: literals and parameters become ``?``, lists collapse, spaces squeeze.

    ``SELECT * FROM album WHERE artist_id = %(pk_1)s::INTEGER`` and ``... = 7`` both give
    ``SELECT * FROM album WHERE artist_id = ?``; ``IN (1, 2, 3)`` gives ``IN (?, ...)``; a
    parameter on the left of ``=`` (as SQLAlchemy's lazy loads write it) is moved to the right.
    """
    s = _STRING.sub("?", statement)
    s = _POSTCOMPILE.sub("(?, ...)", s)
    s = _PARAM.sub("?", s)
    s = _NUMBER.sub("?", s)
    s = _CAST.sub("?", s)
    s = _FLIP.sub(r"\1 = ?", s)
    s = _VALUES.sub(lambda m: "VALUES " + _SPACE.sub(" ", m.group(1)) + ", ...", s)
    s = _LIST.sub("(?, ...)", s)
    return _SPACE.sub(" ", s).strip()


_QUAL = re.compile(r"\b\w+\.(\w+)")
_FROM = re.compile(r"\bFROM\s+([\w.\"]+)", re.IGNORECASE)
_WHERE = re.compile(r"\bWHERE\s+(.*?)(?:\s+(?:GROUP|ORDER|LIMIT|OFFSET|RETURNING|FOR)\b|$)", re.IGNORECASE)
_TARGET = {
    "INSERT": re.compile(r"^INSERT\s+INTO\s+([\w.\"]+)", re.IGNORECASE),
    "UPDATE": re.compile(r"^UPDATE\s+([\w.\"]+)", re.IGNORECASE),
    "DELETE": re.compile(r"^DELETE\s+FROM\s+([\w.\"]+)", re.IGNORECASE),
}


def shape_label(shape: str, width: int = 60) -> str:
    """A short name for a normalized statement: ``SELECT album WHERE artist_id = ?``.

    The verb, the first table after FROM (or the target table), and the WHERE condition with
    table qualifiers dropped; ``...`` marks a statement without WHERE or one cut short.
    """
    words = shape.split(None, 1)
    verb = words[0].upper() if words else "?"
    table = None
    if verb in _TARGET:
        m = _TARGET[verb].search(shape)
        table = m.group(1) if m else None
    elif verb in ("SELECT", "WITH"):
        m = _FROM.search(shape)
        table = m.group(1) if m else None
    if table is None:
        return shape if len(shape) <= width else shape[: width - 4] + " ..."
    label = f"{verb} {table.strip(chr(34))}"
    if verb == "INSERT":
        return label
    m = _WHERE.search(shape)
    if not m:
        return label + " ..."
    cond = _QUAL.sub(r"\1", m.group(1)).strip()
    label += f" WHERE {cond}"
    return label if len(label) <= width else label[: width - 4] + " ..."


@dataclass
class StatementLog:
    """What ran inside a :func:`count_statements` block."""

    statements: list[str] = field(default_factory=list)  # as sent, one entry per server execution
    round_trips: int = 0
    commits: int = 0
    rollbacks: int = 0

    @property
    def count(self) -> int:
        """Statements the server executed (``executemany`` counts each parameter set)."""
        return len(self.statements)

    def by_shape(self) -> list[tuple[str, int]]:
        """``[(shape, how many)]`` in order of first appearance."""
        counts = Counter(normalize_sql(s) for s in self.statements)
        return list(counts.items())

    def report(self, details: bool = False) -> str:
        """``276 statements in 276 round trips: 1 x SELECT artist ... + 275 x SELECT album WHERE artist_id = ?``.

        With ``details=True`` each group's full normalized statement follows on its own line.
        """
        groups = self.by_shape()
        if not groups:
            return "0 statements"
        noun = "statement" if self.count == 1 else "statements"
        trips = "round trip" if self.round_trips == 1 else "round trips"
        head = f"{self.count} {noun} in {self.round_trips} {trips}: " + " + ".join(
            f"{n} x {shape_label(shape)}" for shape, n in groups
        )
        if not details:
            return head
        return head + "\n" + "\n".join(f"  {n:>6} x {shape}" for shape, n in groups)

    def __str__(self) -> str:
        return self.report()


@contextlib.contextmanager
def count_statements(engine: Any) -> Iterator[StatementLog]:
    """Count and record the statements ``engine`` sends inside the block (lesson 04).

    ``engine`` is a SQLAlchemy Engine (or a Lesson, whose ``.engine`` is used). The listeners are
    removed when the block ends, even on an error.
    """
    from sqlalchemy import event

    engine = getattr(engine, "engine", engine)
    log = StatementLog()

    def on_execute(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        log.round_trips += 1
        times = len(parameters) if executemany and isinstance(parameters, (list, tuple)) else 1
        log.statements.extend([statement] * max(times, 1))

    def on_commit(conn: Any) -> None:
        log.commits += 1

    def on_rollback(conn: Any) -> None:
        log.rollbacks += 1

    hooks = [("before_cursor_execute", on_execute), ("commit", on_commit), ("rollback", on_rollback)]
    for name, fn in hooks:
        event.listen(engine, name, fn)
    try:
        yield log
    finally:
        for name, fn in hooks:
            event.remove(engine, name, fn)
