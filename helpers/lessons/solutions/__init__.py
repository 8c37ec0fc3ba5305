"""Reference solutions of the exercises, kept out of the learner's way (notebooks never import this).

``tests/test_exercises.py`` runs each one: the exercise's check must fail on the starting state and
pass after :func:`solve`. A solution takes the psycopg connection, may change the database, and
returns the answer to pass to the check (``None`` for exercises that check the database only).
Lesson modules add theirs with :func:`solution`.
"""
from __future__ import annotations

from typing import Any, Callable

import psycopg

__all__ = ["solution", "solve", "has_solution"]

_SOLUTIONS: dict[str, Callable[[psycopg.Connection], Any]] = {}


def solution(exercise_id: str) -> Callable[[Callable[[psycopg.Connection], Any]], Callable[[psycopg.Connection], Any]]:
    """Decorator: register the reference solution of ``exercise_id``."""
    def deco(fn: Callable[[psycopg.Connection], Any]) -> Callable[[psycopg.Connection], Any]:
        _SOLUTIONS[exercise_id] = fn
        return fn

    return deco


def has_solution(exercise_id: str) -> bool:
    return exercise_id in _SOLUTIONS


def solve(exercise_id: str, conn: psycopg.Connection) -> Any:
    """Apply the reference solution on ``conn``; returns the answer for the check."""
    return _SOLUTIONS[exercise_id](conn)


@solution("toolkit.index_lookup")
def _index_lookup(conn: psycopg.Connection) -> None:
    conn.execute("CREATE INDEX ex_orders_customer_id_idx ON ex_orders (customer_id)")


@solution("toolkit.count_pages")
def _count_pages(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT (pg_relation_size('ex_pages') / 8192)::int").fetchone()[0]


@solution("toolkit.albums_per_artist")
def _albums_per_artist(conn: psycopg.Connection) -> str:
    return (
        "SELECT ar.name, count(al.id) AS albums\n"
        "FROM ex_artist ar LEFT JOIN ex_album al ON al.artist_id = ar.id\n"
        "GROUP BY ar.id, ar.name\nORDER BY ar.name"
    )
