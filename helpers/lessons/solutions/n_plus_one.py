"""Reference solutions of notebook 04's exercises (tests/test_lesson04.py runs them; notebooks never import this)."""
from __future__ import annotations

from typing import Any

import psycopg

from helpers.lessons import n_plus_one
from helpers.lessons.solutions import solution


@solution("04.at_most_two")
def _at_most_two(conn: psycopg.Connection) -> Any:
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    Customer = n_plus_one.Customer
    return (select(Customer).options(selectinload(Customer.invoices))
            .order_by(Customer.customer_id).limit(n_plus_one.CUSTOMER_LIMIT))


@solution("04.predict_count")
def _predict_count(conn: psycopg.Connection) -> int:
    n = n_plus_one.PREDICT_ARTISTS
    albums = conn.execute(
        "SELECT count(*) FROM album AS al JOIN (SELECT artist_id FROM artist ORDER BY artist_id LIMIT %s) AS ar "
        "ON ar.artist_id = al.artist_id", (n,)).fetchone()[0]
    return 1 + n + albums
