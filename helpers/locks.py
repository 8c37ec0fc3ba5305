"""Which locks a statement takes, read live from ``pg_locks`` (lesson 01; migrations reuse it).

:func:`locks_taken` runs a statement inside a transaction that is rolled back, reads the locks its own backend holds
on tables and indexes at that moment, and returns them as ``{relation: mode}`` with the strongest mode per relation.
Nothing the statement did is kept.
"""
from __future__ import annotations

from typing import Any

from helpers.db import as_connection

__all__ = ["LOCK_MODES", "locks_taken"]

#: PostgreSQL's table lock modes, weakest first (the order of the conflict table in the docs, "Explicit Locking").
LOCK_MODES = ("AccessShareLock", "RowShareLock", "RowExclusiveLock", "ShareUpdateExclusiveLock", "ShareLock",
              "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock")


def locks_taken(conn: Any, statement: str, relations: tuple[str, ...] | None = None) -> dict[str, str]:
    """``{relation: strongest lock mode}`` that ``statement`` holds on tables/indexes, measured and rolled back.

    ``relations`` limits the answer to those names (e.g. the two tables of a foreign key). System catalogs are left
    out. The statement really runs, so it must be able to succeed; it is rolled back in any case.
    """
    conn = as_connection(conn)
    rows: list[tuple[str, str]] = []
    with conn.transaction(force_rollback=True):
        conn.execute(statement)
        rows = conn.execute("""
            SELECT c.relname, l.mode
            FROM pg_locks AS l JOIN pg_class AS c ON c.oid = l.relation
            WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted
              AND c.relnamespace <> 'pg_catalog'::regnamespace
        """).fetchall()
    strongest: dict[str, str] = {}
    for rel, mode in rows:
        if relations is not None and rel not in relations:
            continue
        if rel not in strongest or LOCK_MODES.index(mode) > LOCK_MODES.index(strongest[rel]):
            strongest[rel] = mode
    return dict(sorted(strongest.items()))
