"""Reference solutions of lesson 11's exercises (notebooks never import this; tests/test_replicas.py runs
them)."""
from __future__ import annotations

import psycopg

from helpers import replicas
from helpers.lessons import scaling  # noqa: F401  (registers the exercises)
from helpers.lessons.solutions import solution


def read_your_writes(primary, standby, note):
    """Commit on the primary, note the WAL position, wait until the standby has applied it, read there."""
    with primary.connect() as p:
        p.execute("INSERT INTO ex_orders (note) VALUES (%s)", (note,))
        lsn = replicas.current_lsn(p)
    replicas.wait_for_lsn(standby, lsn)
    with standby.connect() as s:
        row = s.execute("SELECT note FROM ex_orders WHERE note = %s", (note,)).fetchone()
    return row[0] if row else None


@solution("11.read_your_writes")
def _read_your_writes(conn: psycopg.Connection):
    return read_your_writes


def shard_for(cluster, customer_id):
    """Ask the coordinator: EXPLAIN VERBOSE keeps the one foreign partition the customer's hash selects."""
    plan = cluster.explain(f"SELECT * FROM orders WHERE customer_id = {int(customer_id)}")
    scan = next(line for line in plan if "Foreign Scan on" in line)
    return scan.split("public.orders_")[1].split()[0]


@solution("11.route_shard")
def _route_shard(conn: psycopg.Connection):
    return shard_for
