"""Reference solutions of lesson 02's exercises (notebooks never import this; tests/test_lesson02.py runs them)."""
from __future__ import annotations

import psycopg

from helpers.lessons import normalization  # noqa: F401  (registers the exercises these solve)
from helpers.lessons.solutions import solution


@solution("02.determinant")
def _determinant(conn: psycopg.Connection) -> str:
    return "warehouse_code"


@solution("02.decompose")
def _decompose(conn: psycopg.Connection) -> None:
    conn.execute("""
        CREATE TABLE ex_warehouse AS SELECT DISTINCT warehouse_code, warehouse_city FROM ex_shipments;
        ALTER TABLE ex_warehouse ADD PRIMARY KEY (warehouse_code);
        CREATE TABLE ex_product AS SELECT DISTINCT product_sku, product_name FROM ex_shipments;
        ALTER TABLE ex_product ADD PRIMARY KEY (product_sku);
        CREATE TABLE ex_shipment_line AS
            SELECT shipment_id, line_no, warehouse_code, product_sku, qty FROM ex_shipments;
        ALTER TABLE ex_shipment_line ADD PRIMARY KEY (shipment_id, line_no),
            ADD FOREIGN KEY (warehouse_code) REFERENCES ex_warehouse,
            ADD FOREIGN KEY (product_sku) REFERENCES ex_product""")


@solution("02.concurrent_refresh")
def _concurrent_refresh(conn: psycopg.Connection) -> None:
    conn.execute("CREATE UNIQUE INDEX ex_genre_sales_genre_idx ON ex_genre_sales (genre)")
