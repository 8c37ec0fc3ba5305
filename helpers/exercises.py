"""Checked exercises: a prompt, a setup, a check that says right or wrong with a hint (notebook 00 on).

Each exercise is an :class:`Exercise` in a registry (:func:`all_exercises`, :func:`get`). A
notebook shows ``ex.prompt``, runs ``ex.setup(db)`` to bring the database to the starting state,
and the learner calls ``ex.check(db)`` (for a change to the database) or
``ex.check(db, answer)`` (for a value or a SQL query), which prints and returns a
:class:`CheckResult`.

Reference solutions live in :mod:`helpers.lessons.solutions`, out of the learner's way (notebooks never
import it), and ``tests/test_exercises.py`` proves for every exercise that its check fails on
the starting state and passes after the reference solution.

The exercises defined here (ids ``toolkit.*``) exercise the machinery on tables their own setup
creates; lesson modules register their own with :func:`register`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

import psycopg

from helpers.core.errors import WorkbookError
from helpers.db import recover
from helpers.plans import explain, has_seq_scan
from helpers.timing import as_connection

__all__ = ["CheckResult", "Exercise", "register", "get", "all_exercises", "NO_ANSWER"]


class _NoAnswer:
    def __repr__(self) -> str:
        return "NO_ANSWER"


NO_ANSWER: Any = _NoAnswer()  # what a notebook's answer cell starts with


@dataclass(frozen=True)
class CheckResult:
    """The verdict of a check: ``ok`` and a message (what was right, or what is wrong and a hint).

    ``answered`` is False when the learner has not tried yet (no answer given, or the database is still exactly as
    the setup left it): the message then starts "There is no answer yet" and says only what to do, never a hint
    (printed as ``Not yet. There is no answer yet: ...``).
    """

    ok: bool
    message: str
    answered: bool = True

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        return ("Right. " if self.ok else "Not yet. ") + self.message

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # IPython shows the sentence, not the dataclass
        p.text(str(self))


Checker = Callable[[psycopg.Connection, Any], CheckResult]


@dataclass(frozen=True)
class Exercise:
    """One exercise: id, title, prompt, a setup of the starting state and a check.

    ``checker(conn, answer)`` decides; ``answer_kind`` names what ``answer`` must be (``None`` when
    the exercise checks the database only), so a wrong type gets a clear message, not a crash.
    """

    id: str
    title: str
    prompt: str
    setup_fn: Callable[[psycopg.Connection], None]
    checker: Checker
    answer_kind: type | tuple[type, ...] | None = None
    answer_hint: str = ""
    lesson: str = "00_start_here"
    starting_answer: Any = field(default=NO_ANSWER)
    # For an exercise that checks the database only: remember the state the setup leaves, and while nothing has
    # changed, answer "There is no answer yet ..." (CheckResult.answered False) instead of a hint. Opt-in, so the
    # checks of lessons written before it keep their behaviour; lessons 00-06 set it, new lessons should too.
    quiet_until_changed: bool = False

    def setup(self, lesson_or_conn: Any) -> None:
        """Bring the database to the exercise's starting state (safe to run again).

        A failed transaction left open on the connection is rolled back first (one line says so). For an exercise
        that checks the database only, the starting state is remembered, so that a check before any change says
        "Not answered yet" instead of giving away a hint.
        """
        conn = as_connection(lesson_or_conn)
        recover(conn)
        try:
            self.setup_fn(conn)
        except psycopg.Error as exc:
            recover(conn, say=False)
            from helpers.widgets import one_line_error

            raise WorkbookError(f"The setup of {self.id} failed: {one_line_error(exc)}; run this cell again "
                                "(re-run the lesson's first cell if it keeps failing).") from None
        if self.answer_kind is None and self.quiet_until_changed:
            _BASELINES[(self.id, _conn_key(conn))] = _fingerprint(conn)

    def check(self, lesson_or_conn: Any, answer: Any = NO_ANSWER) -> CheckResult:
        """Check the database and/or ``answer``; never raises for a wrong or broken answer.

        Before any attempt (``answer`` is NO_ANSWER/None/..., or for a database-only exercise the database is
        unchanged since the setup) it returns ``CheckResult(False, <what to do>, answered=False)``, printed as
        ``Not yet. There is no answer yet (not answered yet): <what to do>`` with no hint. Integral numbers of any type (numpy, pandas, a float such as 345.0,
        a one-value DataFrame from db.sql) count as ints.
        """
        conn = as_connection(lesson_or_conn)
        recover(conn)
        if self.answer_kind is not None:
            if answer is NO_ANSWER or answer is None or answer is Ellipsis:
                return CheckResult(
                    False, f"There is no answer yet (not answered yet): replace NO_ANSWER with your answer, "
                    f"{self.answer_hint}, and run this cell again.", answered=False)
            answer = _normalize(answer, self.answer_kind)
            if isinstance(answer, bool) or not isinstance(answer, self.answer_kind):
                return CheckResult(
                    False, f"The answer should be {self.answer_hint}, not {_a(type(answer).__name__)} ({answer!r:.60})."
                )
        try:
            if self.answer_kind is None and self.quiet_until_changed:
                baseline = _BASELINES.get((self.id, _conn_key(conn)))
                if baseline is not None and baseline == _fingerprint(conn):
                    return CheckResult(
                        False, "There is no answer yet (not answered yet): since the setup no table, column, "
                        "constraint, index or trigger has changed and no row was added or removed. Make your change "
                        "(for example with db.run(\"...\")), then run this check again.", answered=False)
            return self.checker(conn, answer)
        except psycopg.Error as exc:
            from helpers.widgets import one_line_error

            recover(conn, say=False)
            if conn.closed:
                return CheckResult(False, "The lesson's connection is closed (the lesson was reset or the server "
                                          "restarted): re-run the lesson's first cell, then this exercise's cells.")
            return CheckResult(False, f"The check could not run ({one_line_error(exc)}); did you run the setup cell?")

    def show(self) -> None:
        """Print the title and prompt (what a notebook's exercise cell shows)."""
        print(f"Exercise {self.id}: {self.title}\n{self.prompt}")


_BASELINES: dict[tuple[str, tuple], str] = {}

# What a learner's change to the database alters: tables, columns, constraints, indexes, triggers, functions,
# partitions, and the row count of each table the exercises create (ex...), so a DELETE counts as an attempt too.
_FINGERPRINT = r"""
SELECT md5(string_agg(x, E'\n' ORDER BY x)) FROM (
  SELECT concat_ws(' ', 'c', c.oid::regclass::text, c.relkind::text, pg_get_expr(c.relpartbound, c.oid), c.relispopulated::text)
    FROM pg_class c
   WHERE c.relnamespace IN (SELECT oid FROM pg_namespace WHERE nspname NOT LIKE 'pg\_%' AND nspname <> 'information_schema') AND c.relkind IN ('r', 'p', 'v', 'm', 'i', 'I', 'S', 'f')
  UNION ALL
  SELECT concat_ws(' ', 'a', a.attrelid::regclass::text, a.attname, format_type(a.atttypid, a.atttypmod),
                   a.attnotnull::text, pg_get_expr(d.adbin, d.adrelid))
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
   WHERE c.relnamespace IN (SELECT oid FROM pg_namespace WHERE nspname NOT LIKE 'pg\_%' AND nspname <> 'information_schema') AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
  SELECT concat_ws(' ', 'k', conrelid::regclass::text, conname, pg_get_constraintdef(oid)) FROM pg_constraint
   WHERE connamespace IN (SELECT oid FROM pg_namespace WHERE nspname NOT LIKE 'pg\_%' AND nspname <> 'information_schema')
  UNION ALL
  SELECT concat_ws(' ', 'i', pg_get_indexdef(indexrelid)) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
   WHERE c.relnamespace IN (SELECT oid FROM pg_namespace WHERE nspname NOT LIKE 'pg\_%' AND nspname <> 'information_schema')
  UNION ALL
  SELECT concat_ws(' ', 't', pg_get_triggerdef(t.oid), t.tgenabled::text) FROM pg_trigger t
    JOIN pg_class c ON c.oid = t.tgrelid
   WHERE c.relnamespace IN (SELECT oid FROM pg_namespace WHERE nspname NOT LIKE 'pg\_%' AND nspname <> 'information_schema') AND NOT t.tgisinternal
  UNION ALL
  SELECT concat_ws(' ', 'f', p.oid::regprocedure::text, md5(coalesce(p.prosrc, ''))) FROM pg_proc p
   WHERE p.pronamespace = 'public'::regnamespace
) AS catalog(x)
"""


def _conn_key(conn: psycopg.Connection) -> tuple:
    return (id(conn), conn.info.backend_pid)


def _fingerprint(conn: psycopg.Connection) -> str:
    """A digest of the user schemas' structure and of the row counts of the exercise tables (``ex...`` tables, and
    every table of an ``ex...`` schema)."""
    parts = [conn.execute(_FINGERPRINT).fetchone()[0] or ""]
    tables = conn.execute(
        "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema' "
        "AND c.relkind IN ('r', 'p', 'm') AND (c.relname LIKE 'ex%' OR n.nspname LIKE 'ex%') AND NOT c.relispartition "
        "AND (c.relkind <> 'm' OR c.relispopulated) ORDER BY 1").fetchall()
    if tables:
        counts = " UNION ALL ".join(f"SELECT count(*) FROM {name}" for (name,) in tables)
        parts.extend(str(r[0]) for r in conn.execute(counts).fetchall())
    return "|".join(parts)


def _normalize(answer: Any, kind: type | tuple[type, ...]) -> Any:
    """Accept any integral number where an int is expected: numpy/pandas integers, 345.0, a one-value result."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if int not in kinds or isinstance(answer, (bool, int, str)):
        return answer
    shape = getattr(answer, "shape", None)
    if shape is not None and hasattr(answer, "size") and answer.size == 1 and len(shape) >= 1:
        try:  # a 1x1 DataFrame (db.sql) or a one-element Series/array
            answer = answer.to_numpy().reshape(-1)[0] if hasattr(answer, "to_numpy") else answer.reshape(-1)[0]
        except Exception:
            return answer
    import numbers

    if type(answer).__name__ in ("bool_", "bool"):
        return answer
    if isinstance(answer, numbers.Integral):
        return int(answer)
    if isinstance(answer, numbers.Real):
        try:
            if float(answer).is_integer():
                return int(answer)
        except (OverflowError, ValueError):
            pass
    return answer


def _a(noun: str) -> str:
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


_REGISTRY: dict[str, Exercise] = {}


def register(ex: Exercise) -> Exercise:
    """Add an exercise to the registry (ids are unique)."""
    if ex.id in _REGISTRY and _REGISTRY[ex.id] is not ex:
        raise ValueError(f"Exercise id {ex.id!r} is already registered.")
    _REGISTRY[ex.id] = ex
    return ex


def get(exercise_id: str) -> Exercise:
    """The exercise with this id."""
    return _REGISTRY[exercise_id]


def all_exercises() -> list[Exercise]:
    """Every registered exercise, in registration order."""
    return list(_REGISTRY.values())


# ------------------------------------------------------------------------ the toolkit's own examples

def _setup_lookup(conn: psycopg.Connection) -> None:
    conn.execute("DROP TABLE IF EXISTS ex_orders")
    conn.execute(
        "CREATE TABLE ex_orders AS SELECT g AS id, (g * 7919) % 5000 AS customer_id, "
        "(g % 97) * 1.5 AS amount FROM generate_series(1, 20000) AS g"
    )
    conn.execute("ANALYZE ex_orders")


LOOKUP_QUERY = "SELECT id, amount FROM ex_orders WHERE customer_id = 42"


def _check_lookup(conn: psycopg.Connection, answer: Any) -> CheckResult:
    plan = explain(conn, LOOKUP_QUERY)
    if has_seq_scan(plan, "ex_orders"):
        return CheckResult(
            False,
            "The plan still reads the whole table (Seq Scan on ex_orders). Hint: an index on the column "
            "in the WHERE clause lets PostgreSQL jump to the matching rows.",
        )
    if not plan.index_names():
        return CheckResult(False, f"The plan uses no index ({', '.join(plan.node_types())}).")
    return CheckResult(True, f"The lookup now uses {', '.join(plan.index_names())}: {plan.root.label()}.")


def _setup_pages(conn: psycopg.Connection) -> None:
    conn.execute("DROP TABLE IF EXISTS ex_pages")
    conn.execute("CREATE TABLE ex_pages AS SELECT g AS id, repeat('x', 100) AS filler FROM generate_series(1, 20000) AS g")
    conn.execute("VACUUM ANALYZE ex_pages")


def _check_pages(conn: psycopg.Connection, answer: Any) -> CheckResult:
    pages = conn.execute("SELECT pg_relation_size('ex_pages') / current_setting('block_size')::int").fetchone()[0]
    if answer == pages:
        return CheckResult(True, f"ex_pages occupies {pages:,} pages of 8 kB; a sequential scan reads every one.")
    direction = "too high" if answer > pages else "too low"
    return CheckResult(
        False,
        f"{answer:,} is {direction}. Hint: pg_relation_size('ex_pages') gives the size in bytes, and a page is "
        "current_setting('block_size') bytes; or read the pages a Seq Scan touches in EXPLAIN (ANALYZE, BUFFERS).",
    )


def _setup_counts(conn: psycopg.Connection) -> None:
    conn.execute("DROP TABLE IF EXISTS ex_album, ex_artist")
    conn.execute("CREATE TABLE ex_artist (id int PRIMARY KEY, name text NOT NULL)")
    conn.execute("CREATE TABLE ex_album (id int PRIMARY KEY, artist_id int NOT NULL REFERENCES ex_artist, title text)")
    conn.execute("INSERT INTO ex_artist SELECT g, 'Artist ' || g FROM generate_series(1, 40) AS g")
    # every 5th artist has no album: a plain JOIN would drop them
    conn.execute(
        "INSERT INTO ex_album SELECT g, 1 + (g * 7) % 40, 'Album ' || g FROM generate_series(1, 150) AS g "
        "WHERE (1 + (g * 7) % 40) % 5 <> 0"
    )


_EXPECTED_COUNTS = (
    "SELECT a.name, count(b.id) FROM ex_artist a LEFT JOIN ex_album b ON b.artist_id = a.id GROUP BY a.id, a.name"
)


def _check_counts(conn: psycopg.Connection, answer: Any) -> CheckResult:
    from helpers.widgets import one_line_error

    if ";" in re.sub(r"'(?:[^']|'')*'", "", answer).strip().rstrip(";"):
        return CheckResult(False, "The answer should be a single SQL query (no ';' between statements).")
    try:
        with conn.transaction(force_rollback=True):
            conn.execute("SET TRANSACTION READ ONLY")
            cur = conn.execute(answer.strip().rstrip(";"))
            if cur.description is None:
                return CheckResult(False, "That statement returns no rows; write a SELECT.")
            got = cur.fetchall()
    except psycopg.Error as exc:
        return CheckResult(False, f"The query failed: {one_line_error(exc)}")
    expected = conn.execute(_EXPECTED_COUNTS).fetchall()
    if got and len(got[0]) != 2:
        return CheckResult(False, f"Return two columns (name, album count); your query returns {len(got[0])}.")
    if got and all(isinstance(c, str) and not isinstance(n, str) for n, c in got):
        return CheckResult(False, "The columns are the other way round: the artist's name first, then the count.")
    try:
        same = sorted((str(n), int(c)) for n, c in got) == sorted((n, c) for n, c in expected)
    except (TypeError, ValueError):
        same = False
    if same:
        return CheckResult(True, f"One query, {len(got)} rows, artists without albums included with 0.")
    want = {n: c for n, c in expected}
    try:
        mine = {str(n): int(c) for n, c in got}
    except (TypeError, ValueError):
        mine = {}
    if len(mine) == len(want) and set(mine) == set(want):
        off = [n for n in want if mine[n] != want[n]]
        if off and all(want[n] == 0 and mine[n] == 1 for n in off):
            return CheckResult(
                False, f"{len(off)} artists without albums show 1 instead of 0: count(*) counts the row the LEFT JOIN "
                       "makes for them, with every album column NULL. Count an album column instead, e.g. "
                       "count(album.id), which skips NULLs.")
    if len(got) < len(expected):
        return CheckResult(
            False,
            f"Your query returns {len(got)} rows, but there are {len(expected)} artists. Hint: artists without albums disappear in an "
            "inner JOIN; a LEFT JOIN keeps them, and count(album.id) counts them as 0.",
        )
    return CheckResult(
        False, f"Your query returns {len(got)} rows, but the names or counts differ. Hint: GROUP BY the artist and count its albums."
    )


register(Exercise(
    id="toolkit.index_lookup",
    title="Make a lookup use an index",
    prompt=(
        f"The query\n    {LOOKUP_QUERY}\nreads all of ex_orders (20,000 rows) to find a few rows. Change the database "
        "so that it uses an index instead, then run the check."
    ),
    setup_fn=_setup_lookup,
    checker=_check_lookup,
    starting_answer=None,
    quiet_until_changed=True,
))

register(Exercise(
    id="toolkit.count_pages",
    title="How many pages does a table occupy?",
    prompt="How many 8 kB pages does the table ex_pages occupy on disk? Give the number as an int.",
    setup_fn=_setup_pages,
    checker=_check_pages,
    answer_kind=int,
    answer_hint="a whole number such as 123",
))

register(Exercise(
    id="toolkit.albums_per_artist",
    title="One query instead of N+1",
    prompt=(
        "Instead of one query per artist, write ONE SQL query returning each artist's name and how many albums "
        "it has (from ex_artist and ex_album), including artists with no album. Give it as a string."
    ),
    setup_fn=_setup_counts,
    checker=_check_counts,
    answer_kind=str,
    answer_hint="one SQL query as a string, \"SELECT ...\"",
))
