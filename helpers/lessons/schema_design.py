"""Lesson 01 (schema design): the DDL behind models, the lesson's own tables, and its exercises.

* :func:`ddl` compiles models or tables to the DDL PostgreSQL receives (``CREATE TABLE`` and
  ``CREATE INDEX``, for the postgresql dialect), without touching a database.
* :func:`model_source` prints a model as it is written in :mod:`helpers.data.models`.
* :class:`LessonBase` holds the two tables this lesson adds to the music store, on a metadata of
  their own so that :mod:`helpers.data.models` stays exactly ``schema.sql``:
  :class:`CustomerProfile` (a one-to-one relationship: a UNIQUE foreign key) and
  :class:`Subscription` (every Prisma attribute of the translation table, as SQLAlchemy).
* :class:`PassivePlaylist` maps the store's playlist with ``passive_deletes=True`` (in a registry of its own), to
  show SQLAlchemy leaving link rows to ``ON DELETE CASCADE``.
* :func:`fk_actions` lists foreign keys with their ``ON DELETE`` / ``ON UPDATE`` actions; :func:`refused_by` names
  the constraint that refused a statement; :func:`measure_delete` times deleting a parent row.
* Exercises ``01.one_to_one``, ``01.on_delete`` and ``01.updated_at`` (solutions in
  :mod:`helpers.lessons.solutions.schema_design`).
"""
from __future__ import annotations

import ast
import enum
import inspect
import secrets
import time
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy import (
    Column,
    DateTime,
    Enum,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import CreateEnumType
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.schema import CreateIndex, CreateTable

from helpers.data import models
from helpers.exercises import CheckResult, Exercise, register
from helpers.data.models import NAMING_CONVENTION, Customer
from helpers.timing import Measurement, as_connection

__all__ = [
    "ddl", "model_source", "LessonBase", "CustomerProfile", "PlanTier", "Subscription", "client_side_id",
    "fk_actions", "UPDATED_AT_TRIGGER", "PassivePlaylist", "measure_delete", "refused_by",
]

_DIALECT = postgresql.dialect()


# ---------------------------------------------------------------- showing DDL and models

def _table(obj: Any) -> Table:
    if isinstance(obj, Table):
        return obj
    table = getattr(obj, "__table__", None)
    if isinstance(table, Table):
        return table
    raise TypeError(f"Expected a mapped class or a Table, got {type(obj).__name__}.")


def ddl(*objs: Any, indexes: bool = True) -> str:
    """The DDL PostgreSQL receives for these models or tables (lesson 01), one statement per paragraph.

    Compiled for the postgresql dialect, the same text ``metadata.create_all()`` sends; enum types
    used by a table come first (``CREATE TYPE``), its indexes after it. Nothing is executed.
    """
    parts: list[str] = []
    seen_enums: set[str] = set()
    for obj in objs:
        table = _table(obj)
        for col in table.columns:
            if isinstance(col.type, postgresql.ENUM) or (isinstance(col.type, Enum) and col.type.native_enum):
                enum_type = col.type if isinstance(col.type, postgresql.ENUM) else postgresql.ENUM(
                    *col.type.enums, name=col.type.name)
                if enum_type.name not in seen_enums:
                    seen_enums.add(enum_type.name)
                    parts.append(str(CreateEnumType(enum_type).compile(dialect=_DIALECT)).strip() + ";")
        parts.append(_tidy(str(CreateTable(table).compile(dialect=_DIALECT))) + ";")
        if indexes:
            for index in sorted(table.indexes, key=lambda i: str(i.name)):
                parts.append(str(CreateIndex(index).compile(dialect=_DIALECT)).strip() + ";")
    return "\n\n".join(parts)


def _tidy(statement: str) -> str:
    """Drop the blank lines and trailing spaces SQLAlchemy leaves in CREATE TABLE."""
    lines = [line.rstrip().replace("\t", "    ") for line in statement.strip().splitlines()]
    return "\n".join(line for line in lines if line)


def model_source(name: str, module: Any = models) -> str:
    """The source of a class or a module-level assignment (such as ``playlist_track``) in ``module``."""
    source = inspect.getsource(module)
    tree = ast.parse(source)
    lines = source.splitlines()
    for node in tree.body:
        names: list[str] = []
        if isinstance(node, ast.ClassDef):
            names = [node.name]
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
        if name in names:
            start = node.lineno - 1
            if getattr(node, "decorator_list", None):
                start = min(d.lineno for d in node.decorator_list) - 1
            return "\n".join(lines[start:node.end_lineno])
    raise LookupError(f"{name!r} is not defined at the top level of {module.__name__}.")


# ---------------------------------------------------------------- the lesson's own tables

class LessonBase(DeclarativeBase):
    """Tables lesson 01 adds to its own database; a separate metadata keeps helpers.data.models equal to schema.sql."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {str: Text}


class CustomerProfile(LessonBase):
    """One-to-one: at most one profile per customer, because its foreign key is also UNIQUE."""

    __tablename__ = "customer_profile"

    profile_id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey(Customer.__table__.c.customer_id), unique=True)
    favourite_genre: Mapped[str | None]
    bio: Mapped[str | None]

    # the Python side of one-to-one: a scalar, not a list
    customer: Mapped[Customer] = relationship(Customer)


class PlanTier(enum.Enum):
    """A PostgreSQL enum type (Prisma ``enum PlanTier``)."""

    free = "free"
    premium = "premium"
    family = "family"


def client_side_id() -> str:
    """An id made in Python before the INSERT, like Prisma's ``@default(cuid())`` (made by Prisma Client)."""
    return "c" + secrets.token_hex(12)


class Subscription(LessonBase):
    """Every attribute of the Prisma translation table, as SQLAlchemy 2 declares it."""

    __tablename__ = "subscription"
    __table_args__ = (
        UniqueConstraint("customer_id", "tier"),      # @@unique([customerId, tier])
        Index(None, "started_at"),                   # @@index([startedAt])
    )

    subscription_id: Mapped[str] = mapped_column(primary_key=True, default=client_side_id)  # @id @default(cuid())
    customer_id: Mapped[int] = mapped_column(                                                # @relation(..., onDelete: Cascade)
        ForeignKey(Customer.__table__.c.customer_id, ondelete="CASCADE"))
    tier: Mapped[PlanTier] = mapped_column(                                                  # PlanTier @default(free)
        Enum(PlanTier, name="plan_tier"), server_default=PlanTier.free.name)
    code: Mapped[str] = mapped_column(unique=True)                                           # @unique
    started_at: Mapped[datetime] = mapped_column(                                            # @default(now())
        DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(                                            # @updatedAt
        DateTime(timezone=True), default=func.now(), onupdate=func.now())

    customer: Mapped[Customer] = relationship(Customer)


class _PassiveBase(DeclarativeBase):
    """A registry of its own for :class:`PassivePlaylist`, so no other metadata ever creates or drops ``playlist``."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {str: Text}


class PassivePlaylist(_PassiveBase):
    """The store's playlist, mapped so that deleting one leaves its links to ON DELETE CASCADE (lesson 01)."""

    __tablename__ = "playlist"

    playlist_id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str | None]

    # passive_deletes=True: do not load the collection to delete its link rows; the database cascades
    tracks: Mapped[list[models.Track]] = relationship(
        models.Track, secondary=lambda: _passive_links, passive_deletes=True)


_passive_links = Table(
    "playlist_track",
    _PassiveBase.metadata,
    Column("playlist_id", ForeignKey("playlist.playlist_id"), primary_key=True),
    Column("track_id", ForeignKey(models.Track.__table__.c.track_id), primary_key=True),
)


#: The trigger that keeps ``updated_at`` current for every UPDATE, whoever sends it.
UPDATED_AT_TRIGGER = """\
CREATE OR REPLACE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

CREATE TRIGGER subscription_set_updated_at
    BEFORE UPDATE ON subscription
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();"""


# ---------------------------------------------------------------- foreign keys and their actions

_ACTIONS = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}

_FK_QUERY = """
SELECT con.conname AS constraint, con.conrelid::regclass::text AS "table",
       (SELECT string_agg(a.attname, ', ' ORDER BY k.ord) FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
        JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum) AS columns,
       con.confrelid::regclass::text AS "references",
       con.confdeltype::text AS on_delete, con.confupdtype::text AS on_update,
       con.condeferrable AS deferrable, con.condeferred AS deferred
FROM pg_constraint con
WHERE con.contype = 'f' AND con.conrelid::regclass::text = ANY(%s)
ORDER BY 2, 1
"""


def fk_actions(conn: Any, *tables: str) -> Any:
    """A DataFrame of the foreign keys on ``tables`` with their ON DELETE / ON UPDATE actions (lesson 01)."""
    import pandas as pd

    conn = getattr(conn, "conn", conn)
    rows = conn.execute(_FK_QUERY, (list(tables),)).fetchall()
    df = pd.DataFrame(rows, columns=["constraint", "table", "columns", "references", "on_delete", "on_update",
                                     "deferrable", "deferred"])
    for col in ("on_delete", "on_update"):
        df[col] = df[col].map(_ACTIONS)
    return df


def _fk_on(conn: psycopg.Connection, table: str, column: str) -> list[tuple[str, str, str]]:
    """(constraint name, referenced table, on-delete code) of the single-column foreign keys on table.column."""
    rows = conn.execute(
        """SELECT con.conname, con.confrelid::regclass::text, con.confdeltype::text
           FROM pg_constraint con JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = con.conkey[1]
           WHERE con.contype = 'f' AND con.conrelid = to_regclass(%s) AND a.attname = %s
             AND cardinality(con.conkey) = 1""", (table, column)).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def _table_exists(conn: psycopg.Connection, table: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()[0]


def refused_by(conn: Any, statement: str) -> str | None:
    """Run ``statement``; if PostgreSQL refuses it, return the name of the constraint that did (lesson 01).

    None if the statement was accepted (and then it has been applied). The name is the same on every version,
    unlike the wording and even the SQLSTATE of some errors: since PostgreSQL 18 a RESTRICT violation is
    ``restrict_violation`` (23001, "violates RESTRICT setting of foreign key constraint"); up to 17 it is
    ``foreign_key_violation`` (23503) with the same message as NO ACTION.
    """
    conn = as_connection(conn)
    try:
        conn.execute(statement)
    except psycopg.Error as exc:
        return exc.diag.constraint_name or f"(no constraint: {type(exc).__name__})"
    return None


# ---------------------------------------------------------------- what a DELETE on a parent costs

def measure_delete(conn: Any, insert_sql: str, delete_sql: str, *, warmup: int = 2, repeat: int = 7) -> Measurement:
    """Time ``delete_sql`` on a row that ``insert_sql`` creates just before, in a transaction rolled back each time.

    ``insert_sql`` must return the new row's key (``RETURNING ...``), which is passed to ``delete_sql`` as its
    only parameter (``%s``). Only the DELETE is timed, foreign-key checks included (lesson 01). Nothing is left
    behind.
    """
    conn = as_connection(conn)
    times: list[float] = []
    for i in range(warmup + repeat):
        with conn.transaction(force_rollback=True):
            key = conn.execute(insert_sql).fetchone()[0]
            t0 = time.perf_counter()
            deleted = conn.execute(delete_sql, (key,)).rowcount
            elapsed = time.perf_counter() - t0
        if deleted != 1:
            raise ValueError(f"The DELETE removed {deleted} rows; it should remove the one row just inserted.")
        if i >= warmup:
            times.append(elapsed)
    return Measurement(delete_sql, None, tuple(times), warmup, 1)


# ---------------------------------------------------------------- exercise 01.one_to_one

def _setup_one_to_one(conn: psycopg.Connection) -> None:
    conn.execute("DROP TABLE IF EXISTS ex_profile")
    conn.execute("""CREATE TABLE ex_profile (
        profile_id  integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        customer_id integer NOT NULL REFERENCES customer (customer_id),
        bio         text)""")
    conn.execute("INSERT INTO ex_profile (customer_id, bio) VALUES (1, 'Plays bossa nova'), (2, 'Likes metal')")


def _unique_on_customer_id(conn: psycopg.Connection) -> list[str]:
    """Unique, non-partial indexes (a PK, UNIQUE constraint or unique index) on exactly (customer_id)."""
    rows = conn.execute(
        """SELECT i.indexrelid::regclass::text
           FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
           WHERE i.indrelid = 'ex_profile'::regclass AND i.indisunique AND i.indpred IS NULL
             AND i.indnkeyatts = 1 AND a.attname = 'customer_id'""").fetchall()
    return [r[0] for r in rows]


def _check_one_to_one(conn: psycopg.Connection, answer: Any) -> CheckResult:
    if not _table_exists(conn, "ex_profile"):
        return CheckResult(False, "There is no table ex_profile; run the exercise's setup cell first.")
    if not any(ref == "customer" for _, ref, _ in _fk_on(conn, "ex_profile", "customer_id")):
        return CheckResult(False, "ex_profile.customer_id no longer references customer: keep the foreign key "
                                  "and add uniqueness next to it.")
    duplicate_refused = False
    try:
        with conn.transaction(force_rollback=True):
            conn.execute("INSERT INTO ex_profile (customer_id, bio) VALUES (1, 'a second profile')")
    except psycopg.errors.UniqueViolation:
        duplicate_refused = True
    if not duplicate_refused:
        return CheckResult(False, "A second profile for customer 1 is still accepted, so this is one-to-many. "
                                  "Hint: ALTER TABLE ex_profile ADD CONSTRAINT ... UNIQUE (...) on the foreign key "
                                  "column.")
    names = _unique_on_customer_id(conn)
    if not names:
        return CheckResult(False, "Duplicates are refused, but not by a plain unique key on customer_id alone; "
                                  "make customer_id itself UNIQUE (no extra columns, no WHERE).")
    with conn.transaction(force_rollback=True):
        conn.execute("INSERT INTO ex_profile (customer_id, bio) VALUES (3, 'a first profile')")
    return CheckResult(True, f"A second profile for the same customer is refused ({names[0]}), a first one for "
                             "another customer is accepted: one-to-one, enforced by PostgreSQL.")


# ---------------------------------------------------------------- exercise 01.on_delete

def _setup_on_delete(conn: psycopg.Connection) -> None:
    conn.execute("DROP TABLE IF EXISTS ex_wishlist")
    conn.execute("""CREATE TABLE ex_wishlist (
        customer_id integer NOT NULL REFERENCES customer (customer_id),
        track_id    integer NOT NULL REFERENCES track (track_id),
        PRIMARY KEY (customer_id, track_id))""")
    conn.execute("INSERT INTO ex_wishlist VALUES (1, 1), (1, 2), (2, 1)")


def _check_on_delete(conn: psycopg.Connection, answer: Any) -> CheckResult:
    if not _table_exists(conn, "ex_wishlist"):
        return CheckResult(False, "There is no table ex_wishlist; run the exercise's setup cell first.")
    by_customer = [fk for fk in _fk_on(conn, "ex_wishlist", "customer_id") if fk[1] == "customer"]
    by_track = [fk for fk in _fk_on(conn, "ex_wishlist", "track_id") if fk[1] == "track"]
    if len(by_customer) != 1 or len(by_track) != 1:
        return CheckResult(False, "ex_wishlist should have exactly one foreign key to customer (customer_id) and one "
                                  "to track (track_id); re-run the setup cell and change the existing ones.")
    customer_action, track_action = _ACTIONS[by_customer[0][2]], _ACTIONS[by_track[0][2]]
    if customer_action in ("SET NULL", "SET DEFAULT"):
        return CheckResult(False, f"The foreign key to customer is ON DELETE {customer_action}: deleting a customer "
                                  "would keep their wishlist rows and try to point them at no customer, which the "
                                  "NOT NULL primary key refuses. The rows should go with the customer: ON DELETE "
                                  "CASCADE.")
    if customer_action != "CASCADE":
        return CheckResult(False, f"The foreign key to customer is ON DELETE {customer_action}: deleting a customer "
                                  "would still be blocked by their wishlist. Hint: drop the constraint and add it "
                                  "again with ON DELETE CASCADE.")
    if track_action == "NO ACTION":
        return CheckResult(False, "The foreign key to track is still the default, NO ACTION, whose check can be "
                                  "deferred to COMMIT; the exercise asks for the one that refuses at once.")
    if track_action != "RESTRICT":
        return CheckResult(False, f"The foreign key to track is ON DELETE {track_action}: deleting a track would "
                                  "silently change wishlists. Deleting a wished-for track should be refused.")
    return CheckResult(True, "Wishlist rows go with their customer (CASCADE); a wished-for track cannot be deleted, "
                             "not even inside a transaction that would fix it later (RESTRICT).")


# ---------------------------------------------------------------- exercise 01.updated_at

_OLD = "2000-01-01 00:00:00+00"


def _setup_updated_at(conn: psycopg.Connection) -> None:
    conn.execute("DROP TABLE IF EXISTS ex_note")
    conn.execute("DROP FUNCTION IF EXISTS ex_note_touch() CASCADE")
    conn.execute("""CREATE TABLE ex_note (
        note_id    integer PRIMARY KEY,
        body       text NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now())""")
    conn.execute("INSERT INTO ex_note VALUES (1, 'first', %s), (2, 'second', %s)", (_OLD, _OLD))


def _note_triggers(conn: psycopg.Connection) -> list[tuple[str, int, bool]]:
    """The learner's UPDATE triggers on ex_note: (name, tgtype bits, limited to listed columns by UPDATE OF)."""
    rows = conn.execute("SELECT tgname, tgtype, array_length(tgattr::int2[], 1) IS NOT NULL FROM pg_trigger "
                        "WHERE tgrelid = 'ex_note'::regclass AND NOT tgisinternal AND tgenabled <> 'D' "
                        "AND tgtype & 16 <> 0 ORDER BY tgname").fetchall()
    return [(r[0], int(r[1]), bool(r[2])) for r in rows]


def _probe_note(conn: psycopg.Connection, assignment: str) -> tuple[Any, Any, Any]:
    """Run ``UPDATE ex_note SET <assignment>`` on note 2 and roll it back: (updated_at before, after, now())."""
    with conn.transaction(force_rollback=True):
        before = conn.execute("SELECT updated_at FROM ex_note WHERE note_id = 2").fetchone()
        if before is None:
            return None, None, None
        row = conn.execute(f"UPDATE ex_note SET {assignment} WHERE note_id = 2 RETURNING updated_at, now()"
                           ).fetchone()
    return before[0], row[0], row[1]


def _check_updated_at(conn: psycopg.Connection, answer: Any) -> CheckResult:
    from helpers.widgets import one_line_error

    if not _table_exists(conn, "ex_note"):
        return CheckResult(False, "There is no table ex_note; run the exercise's setup cell first.")
    triggers = _note_triggers(conn)
    after = [name for name, bits, _ in triggers if bits & 2 == 0]
    per_statement = [name for name, bits, _ in triggers if bits & 1 == 0]
    try:
        before, got, now = _probe_note(conn, "body = body || '!'")
    except psycopg.Error as exc:
        extra = (f" Your trigger {after[0]} runs AFTER UPDATE; an AFTER trigger that UPDATEs ex_note itself fires "
                 "again for that UPDATE, without end. Set NEW.updated_at in a BEFORE UPDATE ... FOR EACH ROW "
                 "trigger instead.") if after else ""
        return CheckResult(False, f"A plain UPDATE of ex_note now fails: {one_line_error(exc)}.{extra}")
    if before is None:
        return CheckResult(False, "Note 2 is missing from ex_note; re-run the setup cell.")
    if got == before:
        if after and not [n for n, bits, _ in triggers if bits & 3 == 3]:
            return CheckResult(False, f"Your trigger {after[0]} runs AFTER UPDATE: by then the row is already "
                                      "written, so what it does to NEW is thrown away. Make it BEFORE UPDATE ... "
                                      "FOR EACH ROW.")
        if per_statement and len(per_statement) == len(triggers):
            return CheckResult(False, f"Your trigger {per_statement[0]} is FOR EACH STATEMENT: it has no NEW row to "
                                      "change. Make it FOR EACH ROW.")
        if triggers:
            return CheckResult(False, f"There is an UPDATE trigger ({triggers[0][0]}), but a plain UPDATE of body "
                                      "left updated_at where it was: does the function set NEW.updated_at and "
                                      "RETURN NEW?")
        return CheckResult(False, "A plain UPDATE of body left updated_at where it was (setting the column by hand "
                                  "is not the answer: the next UPDATE from psql forgets it again). Hint: a BEFORE "
                                  "UPDATE ... FOR EACH ROW trigger can set NEW.updated_at := now().")
    if got < now:
        return CheckResult(False, f"updated_at changed, but to {got}, earlier than the UPDATE itself; set it "
                                  "to now().")
    # Every UPDATE, not only those that mention body: BEFORE UPDATE OF body fires only when body is in SET.
    _, other, _ = _probe_note(conn, "note_id = note_id")
    if other == before and any(limited for _, _, limited in triggers):
        return CheckResult(False, "An UPDATE of body now sets updated_at, but an UPDATE of another column (here SET "
                                  "note_id = note_id) does not: your trigger is BEFORE UPDATE OF <columns>, which "
                                  "fires only when one of those columns is in SET. The row changed all the same, and "
                                  "any column added later would be missed too, so drop the OF list: BEFORE UPDATE "
                                  "ON ex_note.")
    return CheckResult(True, "A raw UPDATE that never mentions updated_at now sets it to now(), whichever column it "
                             "changes: the database keeps it, whoever sends the UPDATE.")


register(Exercise(
    id="01.one_to_one",
    title="Make a one-to-one relationship one-to-one in the database",
    prompt=(
        "ex_profile (profile_id, customer_id, bio) should hold at most one profile per customer, but so far only\n"
        "the application believes that: PostgreSQL accepts a second profile for the same customer. Change the\n"
        "table so that PostgreSQL refuses it (keep the foreign key and the existing rows), then run the check."
    ),
    setup_fn=_setup_one_to_one,
    checker=_check_one_to_one,
    lesson="01_schema_design",
    starting_answer=None,
    quiet_until_changed=True,
))

register(Exercise(
    id="01.on_delete",
    title="Choose the referential actions of a wishlist",
    prompt=(
        "ex_wishlist (customer_id, track_id) has two foreign keys with the default action. Change them so that\n"
        "deleting a customer deletes their wishlist rows, and deleting a track that is on a wishlist is refused\n"
        "immediately (a check that cannot be deferred to COMMIT). Then run the check."
    ),
    setup_fn=_setup_on_delete,
    checker=_check_on_delete,
    lesson="01_schema_design",
    starting_answer=None,
    quiet_until_changed=True,
))

register(Exercise(
    id="01.updated_at",
    title="Keep updated_at current for every UPDATE",
    prompt=(
        "ex_note (note_id, body, updated_at) gets updated_at right only when the application remembers to set it.\n"
        "Make PostgreSQL set updated_at to the time of the change on every UPDATE, including a plain\n"
        "UPDATE ex_note SET body = '...' sent from psql. Then run the check."
    ),
    setup_fn=_setup_updated_at,
    checker=_check_updated_at,
    lesson="01_schema_design",
    starting_answer=None,
    quiet_until_changed=True,
))

