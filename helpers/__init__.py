"""Helpers for the Postgres Design Workbook: the code behind the notebooks, in layers.

Notebooks start with::

    from helpers import lesson
    db = lesson("03_indexing")

which gives the notebook its own database (see :mod:`helpers.db`). Importing this package changes no global state.

What goes where, top to bottom (a layer may import the layers below it, never one above)::

    helpers/build/       the builds an instructor or maintainer runs (python -m helpers build student|book): the
                         student copy without the solutions, the course as a static HTML book, the instructor
                         guide (reads the lessons' exercises, never the solutions)
    helpers/lessons/     lesson-only code, one module per notebook (indexing, n_plus_one, ...),
                         and lessons/solutions/, the reference solutions the tests run
    helpers/bench/       benchmarks a maintainer runs by hand (python -m helpers bench ...)
    helpers/workshop/    workshop mode, run by an instructor (python -m helpers workshop ...): learner roles,
                         the shared template, status, teardown, the load test, a JupyterHub REST client
    helpers/*.py         the learner's toolkit, imported by notebooks at the top level:
                         db (lesson databases, sql/try_sql), timing (measure, compare), plans (EXPLAIN,
                         plan diffs, charts), widgets (BeforeAfter, ScaleExplorer), counter (statements
                         an ORM sends), latency (a delaying proxy), exercises (check answers), checks
                         (the environment check of lesson 00), fmt (numbers for people), sessions (several
                         live sessions stepped in a set order, lesson 07), locks (the locks a statement takes),
                         private (throw-away PostgreSQL servers a lesson may break, removed even when the kernel
                         is killed, lesson 12), replicas (a streaming standby, lag, read-your-writes, routing,
                         promotion and postgres_fdw shards on private servers, lesson 11), pgbouncer (PgBouncer
                         in front of a private server, lesson 11), audit (the read-only design checklist of
                         lesson 13), importer (CSV or Parquet files into a workbook database)
    helpers/data/        the data world: schema.sql, the shipped Chinook files, the seeded generator,
                         the loader, the ORM models, the ER diagram
    helpers/core/        the platform: settings (paths, environment), server (the embedded PostgreSQL),
                         errors (WorkbookError, the one-sentence message)

The rules, checked by ``tests/test_layout.py``:

- the toolkit never imports a lesson or a benchmark, the data world imports only the core, the core imports nothing
  else from ``helpers``;
- the workshop layer may import the toolkit, the data world and the core, never a lesson, a solution or a benchmark;
- the builds may import the lessons (to read their exercises) but never the solutions;
- a lesson does not import another lesson (what two lessons share belongs in the toolkit), and only the tests import
  ``lessons.solutions``;
- no module imports, even lazily inside a function, a module that imports it back.

A new lesson's code goes in ``helpers/lessons/<topic>.py`` (add it to ``helpers.lessons.MODULES``), its solutions in
``helpers/lessons/solutions/<topic>.py`` and its tests in ``tests/test_lessonNN.py``.
"""

from helpers.db import lesson

__all__ = ["lesson"]
