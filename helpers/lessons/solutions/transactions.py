"""Reference solutions of notebook 07's exercises (tests/test_lesson07.py runs them; notebooks never import this)."""
from __future__ import annotations

from typing import Any

import psycopg

from helpers.lessons import transactions  # noqa: F401  (registers the exercises)
from helpers.lessons.solutions import solution


@solution("07.isolation_level")
def _isolation_level(conn: psycopg.Connection) -> str:
    return "serializable"


def sell_atomic(conn: Any, track_id: int) -> None:
    """One statement: the server reads and writes the row under one row lock."""
    conn.execute("UPDATE stock SET in_stock = in_stock - 1 WHERE track_id = %s", (track_id,))


def sell_for_update(conn: Any, track_id: int) -> None:
    """Read with a row lock held until commit: the second sale waits, then reads the new value."""
    with conn.transaction():
        qty = conn.execute("SELECT in_stock FROM stock WHERE track_id = %s FOR UPDATE", (track_id,)).fetchone()[0]
        conn.execute("UPDATE stock SET in_stock = %s WHERE track_id = %s", (qty - 1, track_id))


@solution("07.safe_sell")
def _safe_sell(conn: psycopg.Connection) -> Any:
    return sell_for_update
