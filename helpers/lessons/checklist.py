"""Lesson 13 (design checklist): the audit's checks as a table, a compact progress line, and the exercises.

The audit itself is toolkit (:mod:`helpers.audit`), so learners can point it at any database; this module holds
what only the notebook needs:

* :func:`checklist` lists the checks (id, severity, what it looks for) as a DataFrame;
* :func:`progress` prints one line per audit while a schema is being fixed: counts and the checks still failing;
* exercises ``13.clean_schema`` and ``13.orphans`` (solutions in :mod:`helpers.lessons.solutions.checklist`).
"""
from __future__ import annotations

from typing import Any

import psycopg

from helpers.audit import CHECKS, Report, audit
from helpers.core.errors import WorkbookError
from helpers.exercises import CheckResult, Exercise, register

__all__ = ["checklist", "progress", "SERVER_LEVEL"]

#: Checks about the database or the server, not about one schema's tables.
SERVER_LEVEL = ("pg_stat_statements_missing", "no_migration_history", "wal_archiving")


def checklist():
    """The audit's checks as a DataFrame: id, default severity, what it looks for."""
    import pandas as pd

    return pd.DataFrame([{"check": c.id, "severity": c.severity, "looks for": c.title} for c in CHECKS.values()])


def progress(report: Report, *, ignore: tuple[str, ...] = SERVER_LEVEL) -> dict[str, int]:
    """Print one line: errors, warnings and the checks that still find something (``ignore``: not counted)."""
    left = {k: v for k, v in sorted(report.by_check().items()) if k not in ignore}
    errors = sum(1 for f in report.findings if f.severity == "error" and f.check not in ignore)
    warnings = sum(1 for f in report.findings if f.severity == "warning" and f.check not in ignore)
    print(f"{errors} error(s), {warnings} warning(s); still failing: "
          + (", ".join(f"{k} ({v})" for k, v in left.items()) if left else "nothing"))
    return left


# ---------------------------------------------------------------- exercise 13.clean_schema

EX_STORE = """
DROP SCHEMA IF EXISTS ex_store CASCADE;
CREATE SCHEMA ex_store;
CREATE TABLE ex_store.products (
    product_id int PRIMARY KEY,
    name       text NOT NULL,
    price      double precision NOT NULL
);
CREATE TABLE ex_store.orders (
    order_id   int,
    product_id int NOT NULL REFERENCES ex_store.products,
    quantity   int NOT NULL,
    ordered_at timestamp NOT NULL
);
INSERT INTO ex_store.products SELECT g, 'product ' || g, 0.5 + g FROM generate_series(1, 20) g;
INSERT INTO ex_store.orders SELECT g, 1 + g % 20, 1 + g % 3, timestamp '2024-01-01' + g * interval '1 hour'
FROM generate_series(1, 300) g;
ANALYZE ex_store.products, ex_store.orders;
"""


def _setup_store(conn: psycopg.Connection) -> None:
    conn.execute(EX_STORE)


def _ex_exists(conn: psycopg.Connection, name: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]


def _coltype(conn: psycopg.Connection, table: str, column: str) -> str | None:
    row = conn.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = %s::regclass "
                       "AND attname = %s AND NOT attisdropped", (table, column)).fetchone()
    return row[0] if row else None


def _check_store(conn: psycopg.Connection, answer: Any) -> CheckResult:
    if not _ex_exists(conn, "ex_store.orders") or not _ex_exists(conn, "ex_store.products"):
        return CheckResult(False, "ex_store.orders or ex_store.products is missing: run the setup cell (fix the "
                                  "tables, do not drop them).")
    rows = conn.execute("SELECT (SELECT count(*) FROM ex_store.orders), (SELECT count(*) FROM ex_store.products)"
                        ).fetchone()
    if rows != (300, 20):
        return CheckResult(False, f"The tables hold {rows[0]} orders and {rows[1]} products, not 300 and 20: fix the "
                                  "schema without deleting data (run the setup cell to start again).")
    for table, col in (("ex_store.products", "price"), ("ex_store.orders", "quantity"),
                       ("ex_store.orders", "ordered_at")):
        typ = _coltype(conn, table, col)
        if typ is None:
            return CheckResult(False, f"{table}.{col} is gone: the audit is satisfied by fixing a column, not by "
                                      "dropping it.")
        if typ in ("text", "character varying"):
            return CheckResult(False, f"{table}.{col} became {typ}: a price or a quantity must stay a number "
                                      "(numeric(10, 2) for money), and a time a timestamptz.")
    try:
        report = audit(conn, schemas="ex_store")
    except WorkbookError as exc:  # e.g. a transaction the learner left open
        return CheckResult(False, str(exc))
    left = [f for f in report.findings if f.severity in ("error", "warning") and f.check not in SERVER_LEVEL]
    if report.skipped:
        return CheckResult(False, f"Some checks could not run: {report.skipped}.")
    if left:
        first = left[0]
        return CheckResult(False, f"The audit still reports {len(left)} finding(s), e.g. {first.check} on "
                                  f"{first.object}: {first.message} Hint: its suggested fix is\n{first.fix}")
    return CheckResult(True, "The audit finds no error and no warning in ex_store: a key on orders, money as numeric, "
                             "an index under the foreign key, instants as timestamptz, and no negative prices or "
                             "quantities accepted.")


# ---------------------------------------------------------------- exercise 13.orphans

EX_LOG = """
DROP SCHEMA IF EXISTS ex_log CASCADE;
CREATE SCHEMA ex_log;
CREATE TABLE ex_log.tracks (id int PRIMARY KEY, title text NOT NULL);
CREATE TABLE ex_log.plays (
    id       int PRIMARY KEY,
    track_id int NOT NULL,
    at       timestamptz NOT NULL
);
CREATE INDEX ON ex_log.plays (track_id);
INSERT INTO ex_log.tracks SELECT g, 'track ' || g FROM generate_series(1, 50) g;
-- plays of tracks 1..50, and 12 plays of tracks 51..54 that were deleted long ago: orphans
INSERT INTO ex_log.plays SELECT g, 1 + (g * 7) % 50, timestamptz '2024-01-01' + g * interval '1 minute'
FROM generate_series(1, 600) g;
INSERT INTO ex_log.plays SELECT 600 + g, 51 + g % 4, timestamptz '2024-02-01' + g * interval '1 minute'
FROM generate_series(1, 12) g;
"""
_GOOD_PLAYS = 600


def _setup_log(conn: psycopg.Connection) -> None:
    conn.execute(EX_LOG)


def _check_log(conn: psycopg.Connection, answer: Any) -> CheckResult:
    if not _ex_exists(conn, "ex_log.plays") or not _ex_exists(conn, "ex_log.tracks"):
        return CheckResult(False, "ex_log.plays or ex_log.tracks is missing: run the setup cell.")
    if _coltype(conn, "ex_log.plays", "track_id") is None:
        return CheckResult(False, "ex_log.plays.track_id is gone: keep the column and give it a foreign key.")
    good = conn.execute("SELECT count(*) FROM ex_log.plays p JOIN ex_log.tracks t ON t.id = p.track_id").fetchone()[0]
    tracks = conn.execute("SELECT count(*) FROM ex_log.tracks").fetchone()[0]
    if tracks < 50:
        return CheckResult(False, f"ex_log.tracks lost rows ({tracks} left of 50): the orphans are in plays, "
                                  "the tracks are fine.")
    if good < _GOOD_PLAYS:
        return CheckResult(False, f"Only {good} plays of existing tracks are left of {_GOOD_PLAYS}: remove only "
                                  "the orphans (plays whose track does not exist).")
    fks = conn.execute("""SELECT convalidated FROM pg_constraint WHERE conrelid = 'ex_log.plays'::regclass
                          AND contype = 'f' AND confrelid = 'ex_log.tracks'::regclass""").fetchall()
    if not fks:
        report = audit(conn, schemas="ex_log", checks=["id_column_without_fk"])
        msg = report.findings[0].message if report.findings else "no foreign key yet."
        return CheckResult(False, f"plays.track_id has no foreign key to tracks: {msg} Hint: deal with the orphans "
                                  "first (delete them, or keep them in another table), then ADD FOREIGN KEY.")
    if not any(valid for (valid,) in fks):
        return CheckResult(False, "The foreign key is NOT VALID: new rows are checked, but the orphans already "
                                  "there are not. Remove them, then ALTER TABLE ex_log.plays VALIDATE CONSTRAINT ...")
    return CheckResult(True, "Orphans gone, the foreign key validated: no play can point at a missing track again, "
                             "and the audit's id_column_without_fk is quiet.")


register(Exercise(
    id="13.clean_schema",
    title="Fix a schema until the audit reports no errors and no warnings",
    prompt=(
        "The setup creates schema ex_store (products, orders) with several design flaws. Run\n"
        "audit(db, schemas=\"ex_store\"), apply fixes (the suggested SQL is a good start), and re-run until it\n"
        "reports no error and no warning about the schema's tables (the database- and server-level checks\n"
        "pg_stat_statements_missing, no_migration_history and wal_archiving are not counted). Keep every row."
    ),
    setup_fn=_setup_store,
    checker=_check_store,
    lesson="13_design_checklist",
    starting_answer=None,
    quiet_until_changed=True,  # no hint before the learner has changed anything
))

register(Exercise(
    id="13.orphans",
    title="Give a reference column its foreign key",
    prompt=(
        "ex_log.plays.track_id refers to ex_log.tracks.id, but nothing enforces it, and some plays point at tracks\n"
        "that no longer exist. Make the database enforce the reference (a validated foreign key), losing no play of\n"
        "an existing track. The audit's id_column_without_fk finding tells you how many orphans there are."
    ),
    setup_fn=_setup_log,
    checker=_check_log,
    lesson="13_design_checklist",
    starting_answer=None,
    quiet_until_changed=True,  # no hint before the learner has changed anything
))
