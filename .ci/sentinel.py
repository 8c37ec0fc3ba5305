"""CI's proof that the workbook leaves other databases alone.

`create URL` makes a database `ci_sentinel_db` (not the workbook's: no marker) holding a table with known rows;
`check URL` fails unless it is still there, unchanged, after the whole suite has run against that server.
"""
import sys

import psycopg

ROWS = [(1, "do not drop me"), (2, "nor change me")]


def main(action: str, url: str) -> int:
    with psycopg.connect(url, autocommit=True) as admin:
        if action == "create":
            admin.execute("DROP DATABASE IF EXISTS ci_sentinel_db")
            admin.execute("CREATE DATABASE ci_sentinel_db")
    target = psycopg.conninfo.make_conninfo(url, dbname="ci_sentinel_db")
    with psycopg.connect(target, autocommit=True) as conn:
        if action == "create":
            conn.execute("CREATE TABLE sentinel (id int PRIMARY KEY, note text)")
            conn.cursor().executemany("INSERT INTO sentinel VALUES (%s, %s)", ROWS)
            print("sentinel: created ci_sentinel_db")
            return 0
        rows = conn.execute("SELECT id, note FROM sentinel ORDER BY id").fetchall()
    if rows != ROWS:
        print(f"sentinel: ci_sentinel_db was changed: {rows}")
        return 1
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("DROP DATABASE ci_sentinel_db")
    print("sentinel: ci_sentinel_db survived the suite unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
