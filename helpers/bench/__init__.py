"""Benchmarks a maintainer runs by hand (``python -m helpers bench load|timer|audit``); they print ratios, never assert.

- :mod:`~helpers.bench.load`: how fast each scale loads (COPY vs inserts, indexes after the load).
- :mod:`~helpers.bench.timer`: the workbook's ``measure`` against pgbench on the same statement.
- :mod:`~helpers.bench.audit`: :func:`helpers.audit.audit` on 1,000 tables and 5,000 indexes (target under 5 s).

May import the toolkit, the data world and the core, never a lesson.
"""
