"""Lesson 10 (patterns: soft delete, audit trail, polymorphic associations): the helpers behind
``notebooks/10_patterns.ipynb``.

What lives here rather than in the notebook:

- :func:`try_signups`: re-register a list of emails, one savepoint each, and count what the database refused;
- :func:`live_only_session`: a SQLAlchemy session whose every SELECT of a soft-deletable model gets
  ``deleted_at IS NULL`` added (``with_loader_criteria`` in a ``do_orm_execute`` hook);
- :func:`count_as_role`: a count run under ``SET LOCAL ROLE`` in a rolled-back transaction (row-level security);
- :data:`AUDIT_SQL`, :func:`app_audit_session`: the trigger audit and the application-level audit (SQLAlchemy
  ``before_flush``), side by side;
- :func:`trigger_write_cost`: UPDATE throughput of the same rows with and without the audit trigger;
- :func:`polymorphic_mappings`: SQLAlchemy mappings of the three polymorphic designs;
- :func:`fastest_ratio`: the steadier ratio (fastest run of each side) on a busy machine;
- the lesson's checked exercises (ids ``10.*``), registered on import; reference solutions are in
  :mod:`helpers.lessons.solutions.patterns`.
"""

import statistics
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterable

import psycopg
from psycopg import sql as pgsql

from helpers.exercises import CheckResult, Exercise, register
from helpers.fmt import fmt_rate, fmt_ratio, fmt_time
from helpers.timing import Measurement, as_connection

__all__ = [
    "try_signups", "SoftDelete", "LiveCustomer", "live_only_session", "count_as_role", "AUDIT_SQL",
    "AuditedTrack", "app_audit_session", "WriteCost", "trigger_write_cost", "fastest_ratio", "STATE_AT_SQL",
    "polymorphic_mappings",
]


# ------------------------------------------------------------------------------------------ soft delete

def try_signups(conn_or_lesson: Any, emails: Iterable[str]) -> tuple[int, int, str | None]:
    """Insert a new customer for each email, each in its own savepoint, and roll everything back (lesson 10).

    Returns ``(accepted, refused, first error)``: what a wave of people signing up again would meet.
    """
    conn = as_connection(conn_or_lesson)
    ok = refused = 0
    first: str | None = None
    with conn.transaction(force_rollback=True):
        for email in emails:
            try:
                with conn.transaction():
                    conn.execute("INSERT INTO customer (first_name, last_name, email) VALUES ('New', 'Signup', %s)",
                                 (email,))
                ok += 1
            except psycopg.errors.UniqueViolation as exc:
                refused += 1
                if first is None:
                    first = (exc.diag.message_primary or str(exc)).strip()
    return ok, refused, first


def _orm():
    """The lesson's small ORM models, built on first use (importing the lesson stays cheap)."""
    global _MODELS
    if _MODELS is not None:
        return _MODELS
    from sqlalchemy import Numeric, event
    from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, with_loader_criteria
    from datetime import datetime

    class Base(DeclarativeBase):
        pass

    class SoftDelete:
        """Mixin: a model with a ``deleted_at`` column that a live-only session hides when set."""

        deleted_at: Mapped[datetime | None] = mapped_column()

    class LiveCustomer(SoftDelete, Base):
        __tablename__ = "customer"
        customer_id: Mapped[int] = mapped_column(primary_key=True)
        email: Mapped[str]

    class AuditedTrack(Base):
        __tablename__ = "track"
        track_id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str]
        genre_id: Mapped[int | None]
        unit_price: Mapped[Decimal] = mapped_column(Numeric(10, 2))

    def add_live_filter(state):  # the global filter: every ORM SELECT, unless asked not to
        if state.is_select and not state.execution_options.get("include_deleted", False):
            state.statement = state.statement.options(
                with_loader_criteria(SoftDelete, lambda cls: cls.deleted_at.is_(None), include_aliases=True))

    _MODELS = {"Base": Base, "SoftDelete": SoftDelete, "LiveCustomer": LiveCustomer, "AuditedTrack": AuditedTrack,
               "filter": add_live_filter, "event": event}
    return _MODELS


_MODELS: dict | None = None


def __getattr__(name: str) -> Any:  # SoftDelete, LiveCustomer, AuditedTrack are built lazily
    if name in ("SoftDelete", "LiveCustomer", "AuditedTrack"):
        return _orm()[name]
    raise AttributeError(name)


def live_only_session(engine: Any) -> Any:
    """A SQLAlchemy Session that adds ``deleted_at IS NULL`` to every SELECT of a :class:`SoftDelete` model.

    Pass ``execution_options={"include_deleted": True}`` to a query to see deleted rows too.
    """
    from sqlalchemy.orm import Session

    m = _orm()
    session = Session(engine)
    m["event"].listen(session, "do_orm_execute", m["filter"])
    return session


def count_as_role(conn_or_lesson: Any, role: str, query: str) -> int:
    """Run a count as ``role`` (``SET LOCAL ROLE``) in a transaction that is rolled back (lesson 10)."""
    conn = as_connection(conn_or_lesson)
    with conn.transaction(force_rollback=True):
        conn.execute(pgsql.SQL("SET LOCAL ROLE {}").format(pgsql.Identifier(role)))
        return int(conn.execute(query).fetchone()[0])


# ------------------------------------------------------------------------------------------ audit

#: The audit table and the trigger function: who (``app.user``), when, and a jsonb diff {column: {old, new}}.
AUDIT_SQL = """
CREATE TABLE audit_log (
    audit_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    table_name text        NOT NULL,
    row_id     bigint      NOT NULL,
    op         text        NOT NULL,
    changed_by text,
    changed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    diff       jsonb       NOT NULL
);
CREATE INDEX audit_log_row_idx ON audit_log (table_name, row_id, changed_at);

CREATE FUNCTION audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_j jsonb := CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END;
    new_j jsonb := CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END;
    d     jsonb;
BEGIN
    SELECT coalesce(jsonb_object_agg(k, jsonb_build_object('old', old_j -> k, 'new', new_j -> k)), '{}')
      INTO d
      FROM jsonb_object_keys(coalesce(new_j, old_j)) AS k
     WHERE old_j -> k IS DISTINCT FROM new_j -> k;
    IF d = '{}' THEN
        RETURN NULL;                        -- an UPDATE that changed nothing: nothing to record
    END IF;
    INSERT INTO audit_log (table_name, row_id, op, changed_by, diff)
    VALUES (TG_TABLE_NAME, (coalesce(new_j, old_j) ->> TG_ARGV[0])::bigint, TG_OP,
            nullif(current_setting('app.user', true), ''), d);
    RETURN NULL;                            -- AFTER trigger: the return value is ignored
END $$;
"""

#: The state of one row at time T: its current values, with every change made after T undone (oldest first wins).
STATE_AT_SQL = """
SELECT to_jsonb(t) || coalesce((
         SELECT jsonb_object_agg(key, old_value)
         FROM (SELECT DISTINCT ON (d.key) d.key, d.value -> 'old' AS old_value
               FROM audit_log a, jsonb_each(a.diff) AS d
               WHERE a.table_name = 'track' AND a.row_id = t.track_id AND a.changed_at > %(t)s
               ORDER BY d.key, a.changed_at, a.audit_id) AS undone), '{}') AS state
FROM track AS t
WHERE t.track_id = %(track_id)s
"""


def app_audit_session(engine: Any, user: str) -> Any:
    """A Session that writes ``app_audit`` rows for the ORM updates it flushes (``before_flush``; lesson 10).

    Updates only (``session.dirty``): inserts and deletes (``session.new``, ``session.deleted``) are not recorded.

    Only objects the session loads and flushes are seen: a ``text()`` UPDATE or a bulk ``update()`` is not.
    """
    import json

    from sqlalchemy import inspect, text
    from sqlalchemy.orm import Session

    m = _orm()
    session = Session(engine)

    def record(sess, flush_context, instances):
        for obj in sess.dirty:
            state = inspect(obj)
            diff = {}
            for attr in state.mapper.column_attrs:
                hist = state.attrs[attr.key].history
                if hist.has_changes():
                    old = hist.deleted[0] if hist.deleted else None
                    new = hist.added[0] if hist.added else None
                    diff[attr.key] = {"old": str(old), "new": str(new)}
            if diff:
                sess.execute(text("INSERT INTO app_audit (table_name, row_id, changed_by, diff) "
                                  "VALUES (:t, :id, :who, CAST(:d AS jsonb))"),
                             {"t": state.mapper.local_table.name, "id": state.identity[0], "who": user,
                              "d": json.dumps(diff)})

    m["event"].listen(session, "before_flush", record)
    return session


@dataclass
class WriteCost:
    """UPDATE times of the same rows on a table without and with the audit trigger (lesson 10)."""

    rows: int
    plain_s: list[float]
    audited_s: list[float]

    @property
    def ratio(self) -> float:
        """How many times longer the audited UPDATE takes (fastest run of each side)."""
        return min(self.audited_s) / min(self.plain_s)

    def text(self) -> str:
        p, a = statistics.median(self.plain_s), statistics.median(self.audited_s)
        return (f"UPDATE of {self.rows:,} rows, median of {len(self.plain_s)} runs each:\n"
                f"without the trigger: {fmt_time(p)}, {fmt_rate(self.rows / p)}\n"
                f"with the trigger:    {fmt_time(a)}, {fmt_rate(self.rows / a)}\n"
                f"the trigger makes the UPDATE {fmt_ratio(self.ratio)} slower (fastest runs)")

    def __str__(self) -> str:
        return self.text()


def trigger_write_cost(conn_or_lesson: Any, rows: int = 20_000, repeat: int = 5, warmup: int = 1) -> WriteCost:
    """Time ``UPDATE ... SET ms_played = ms_played + 1`` of ``rows`` rows copied from ``plays`` into two scratch
    tables, one with the audit trigger (:data:`AUDIT_SQL` must have run), alternately; the tables and the audit
    rows they wrote are removed at the end. Each timing includes the commit.
    """
    conn = as_connection(conn_or_lesson)
    plain, audited = [], []
    try:
        for t in ("wc_plain", "wc_audited"):
            conn.execute(pgsql.SQL("CREATE TABLE {} AS SELECT * FROM plays ORDER BY play_id LIMIT {}").format(
                pgsql.Identifier(t), pgsql.Literal(rows)))
            conn.execute(pgsql.SQL("ALTER TABLE {} ADD PRIMARY KEY (play_id)").format(pgsql.Identifier(t)))
        conn.execute("CREATE TRIGGER wc_audit AFTER INSERT OR UPDATE OR DELETE ON wc_audited "
                     "FOR EACH ROW EXECUTE FUNCTION audit_row('play_id')")
        for r in range(warmup + repeat):
            for t, out in (("wc_plain", plain), ("wc_audited", audited)):
                t0 = time.perf_counter()
                conn.execute(pgsql.SQL("UPDATE {} SET ms_played = ms_played + 1").format(pgsql.Identifier(t)))
                elapsed = time.perf_counter() - t0
                if r >= warmup:
                    out.append(elapsed)
            conn.execute("DELETE FROM audit_log WHERE table_name = 'wc_audited'")  # every round starts alike
            conn.execute("VACUUM wc_plain, wc_audited, audit_log")
    finally:
        conn.execute("DROP TABLE IF EXISTS wc_plain, wc_audited")
        conn.execute("DELETE FROM audit_log WHERE table_name = 'wc_audited'")
    return WriteCost(rows, plain, audited)


def fastest_ratio(before: Measurement, after: Measurement) -> float:
    """``before.min / after.min``: noise on a shared machine only adds time, so the fastest runs are steadiest."""
    return before.min / after.min if after.min > 0 else float("inf")


# ------------------------------------------------------------------------------------------ exercises

def _exists(conn: psycopg.Connection, table: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()[0]


# --- 10.live_email

def _setup_live_email(conn: psycopg.Connection) -> None:
    conn.execute("DROP TABLE IF EXISTS ex10_customer")
    conn.execute("CREATE TABLE ex10_customer (customer_id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, "
                 "email text NOT NULL, deleted_at timestamptz, "
                 "CONSTRAINT ex10_customer_email_key UNIQUE (email))")
    conn.execute("INSERT INTO ex10_customer (customer_id, email, deleted_at) "
                 "SELECT g, 'fan' || g || '@example.org', CASE WHEN g % 10 = 0 THEN now() END "
                 "FROM generate_series(1, 200) AS g")
    conn.execute("SELECT setval(pg_get_serial_sequence('ex10_customer', 'customer_id'), 200)")


def _insert_ok(conn: psycopg.Connection, email: str, deleted: bool = False) -> bool:
    try:
        with conn.transaction():
            conn.execute("INSERT INTO ex10_customer (email, deleted_at) VALUES (%s, "
                         + ("now()" if deleted else "NULL") + ")", (email,))
        return True
    except psycopg.errors.UniqueViolation:
        return False


def _email_indexes(conn: psycopg.Connection) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = 'ex10_customer'::regclass "
        "AND indisunique AND NOT indisprimary ORDER BY indexrelid").fetchall()]


def _check_live_email(conn: psycopg.Connection, answer: Any) -> CheckResult:
    if not _exists(conn, "ex10_customer"):
        return CheckResult(False, "There is no table ex10_customer: run the exercise's setup cell first.")
    defs = _email_indexes(conn)
    with conn.transaction(force_rollback=True):
        rejoin = _insert_ok(conn, "fan10@example.org")           # fan10 is soft-deleted
        live_dup = _insert_ok(conn, "fan11@example.org")          # fan11 is live
        two_deleted = _insert_ok(conn, "fan20@example.org", deleted=True)
    if live_dup:
        if any("deleted_at" in d and "email" in d and "WHERE" not in d for d in defs):
            return CheckResult(False, (
                "Two live customers can now share fan11@example.org. A unique index on (email, deleted_at) never "
                "compares NULLs as equal, and live rows have deleted_at NULL, so it lets every live duplicate in. "
                "Hint: a unique index on email alone, with a WHERE clause that keeps only live rows."))
        if any("WHERE (deleted_at IS NOT NULL)" in d for d in defs):
            return CheckResult(False, (
                "Two live customers can share an email: your partial index covers the deleted rows "
                "(WHERE deleted_at IS NOT NULL), the opposite of what must be unique. Hint: WHERE deleted_at IS NULL."))
        return CheckResult(False, (
            "Two live customers can now share fan11@example.org: nothing enforces uniqueness among live rows any "
            "more. Hint: CREATE UNIQUE INDEX ... ON ex10_customer (email) WHERE deleted_at IS NULL."))
    if not rejoin:
        if len(defs) == 1 and "ex10_customer_email_key" in defs[0]:
            return CheckResult(False, (
                "The table is as the setup left it: fan10@example.org, a soft-deleted customer, still cannot sign up "
                "again. Change the table, then run this check again."))
        if any(d.endswith("(email)") for d in defs):
            return CheckResult(False, (
                "fan10@example.org belongs to a soft-deleted customer and still blocks a new signup: a unique "
                "constraint or index on email covers every row, deleted or not. Hint: drop the constraint "
                "(ALTER TABLE ex10_customer DROP CONSTRAINT ...) and index only the live rows."))
        return CheckResult(False, (
            "fan10@example.org belongs to a soft-deleted customer and still blocks a new signup. Hint: the unique "
            "index must leave out rows whose deleted_at is set."))
    if not two_deleted:
        return CheckResult(False, (
            "A second deleted row with fan20@example.org's email is refused: deleted rows should not have to be "
            "unique (a customer may leave twice). Hint: index only the rows WHERE deleted_at IS NULL."))
    return CheckResult(True, (
        "A soft-deleted customer's email is free again, two live customers still cannot share one, and deleted "
        "rows are left out of the rule: a partial unique index."))


# --- 10.no_orphans

def _setup_no_orphans(conn: psycopg.Connection) -> None:
    conn.execute("DROP TABLE IF EXISTS ex10_comment, ex10_track, ex10_album")
    conn.execute("CREATE TABLE ex10_track (track_id int PRIMARY KEY, name text NOT NULL)")
    conn.execute("CREATE TABLE ex10_album (album_id int PRIMARY KEY, title text NOT NULL)")
    conn.execute("INSERT INTO ex10_track SELECT g, 'track ' || g FROM generate_series(1, 50) AS g")
    conn.execute("INSERT INTO ex10_album SELECT g, 'album ' || g FROM generate_series(1, 20) AS g")
    conn.execute("CREATE TABLE ex10_comment (comment_id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, "
                 "commentable_type text NOT NULL CHECK (commentable_type IN ('track', 'album')), "
                 "commentable_id int NOT NULL, body text NOT NULL)")
    conn.execute("INSERT INTO ex10_comment (comment_id, commentable_type, commentable_id, body) "
                 "SELECT g, CASE WHEN g % 3 = 0 THEN 'album' ELSE 'track' END, "
                 "CASE WHEN g % 3 = 0 THEN 1 + g % 20 ELSE 1 + g % 50 END, 'comment ' || g "
                 "FROM generate_series(1, 300) AS g")
    conn.execute("SELECT setval(pg_get_serial_sequence('ex10_comment', 'comment_id'), 300)")


def _columns(conn: psycopg.Connection, table: str) -> dict[str, bool]:
    """Column name -> NOT NULL without a default."""
    return {r[0]: r[1] for r in conn.execute(
        "SELECT attname, attnotnull AND NOT atthasdef AND attidentity = '' FROM pg_attribute "
        "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped", (table,)).fetchall()}


def _fk(conn: psycopg.Connection, column: str, target: str) -> str | None:
    """confdeltype of a one-column foreign key ex10_comment(column) -> target, None without one."""
    row = conn.execute(
        "SELECT c.confdeltype FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid "
        "AND a.attnum = c.conkey[1] WHERE c.contype = 'f' AND c.conrelid = 'ex10_comment'::regclass "
        "AND c.confrelid = %s::regclass AND cardinality(c.conkey) = 1 AND a.attname = %s",
        (target, column)).fetchone()
    return None if row is None else str(row[0])


def _try_insert(conn: psycopg.Connection, cols: dict[str, bool], track: int | None, album: int | None) -> str | None:
    """Insert a comment with these targets in a savepoint; the SQLSTATE of the refusal, None if accepted."""
    values: dict[str, Any] = {"body": "probe", "track_id": track, "album_id": album}
    if "commentable_type" in cols:
        values["commentable_type"] = "track" if track is not None or album is None else "album"
    if "commentable_id" in cols:
        values["commentable_id"] = track if track is not None else (album if album is not None else 1)
    values = {k: v for k, v in values.items() if k in cols}
    stmt = pgsql.SQL("INSERT INTO ex10_comment ({}) VALUES ({})").format(
        pgsql.SQL(", ").join(map(pgsql.Identifier, values)), pgsql.SQL(", ").join(pgsql.Placeholder() * len(values)))
    try:
        with conn.transaction():
            conn.execute(stmt, list(values.values()))
        return None
    except psycopg.Error as exc:
        return exc.sqlstate or "error"


def _check_no_orphans(conn: psycopg.Connection, answer: Any) -> CheckResult:
    if not (_exists(conn, "ex10_comment") and _exists(conn, "ex10_track") and _exists(conn, "ex10_album")):
        return CheckResult(False, "The exercise's tables are missing: run its setup cell first.")
    cols = _columns(conn, "ex10_comment")
    missing = [c for c in ("track_id", "album_id") if c not in cols]
    if missing:
        return CheckResult(False, (f"ex10_comment has no column {' or '.join(missing)}. Hint: one nullable column "
                                   "per kind of target, track_id and album_id, each a real foreign key."))
    counts = conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE num_nonnulls(track_id, album_id) = 1) FROM ex10_comment").fetchone()
    if counts[0] != 300:
        return CheckResult(False, f"ex10_comment has {counts[0]} comments, not the 300 of the setup: keep every comment.")
    if counts[1] != 300:
        return CheckResult(False, (
            f"Only {counts[1]} of the 300 comments have exactly one target column filled. Hint: "
            "UPDATE ex10_comment SET track_id = commentable_id WHERE commentable_type = 'track' (and the same for "
            "albums) before adding the constraints."))
    wrong = conn.execute(
        "SELECT count(*) FROM ex10_comment WHERE track_id IS DISTINCT FROM CASE WHEN comment_id % 3 <> 0 "
        "THEN 1 + comment_id % 50 END OR album_id IS DISTINCT FROM CASE WHEN comment_id % 3 = 0 "
        "THEN 1 + comment_id % 20 END").fetchone()[0]
    if wrong:
        return CheckResult(False, (
            f"{wrong} comments point at a different target than their (commentable_type, commentable_id) pair said. "
            "Hint: copy commentable_id into track_id where commentable_type = 'track', into album_id where 'album'."))
    for col, target in (("track_id", "ex10_track"), ("album_id", "ex10_album")):
        kind = _fk(conn, col, target)
        if kind is None:
            return CheckResult(False, (
                f"{col} is not a foreign key to {target}: a comment can still point at a {target[5:]} that does not "
                f"exist. Hint: ALTER TABLE ex10_comment ADD FOREIGN KEY ({col}) REFERENCES {target} ON DELETE CASCADE."))
        if kind != "c":
            return CheckResult(False, (
                f"The foreign key on {col} refuses to delete a {target[5:]} that has comments (ON DELETE "
                f"{'RESTRICT' if kind == 'r' else 'NO ACTION' if kind == 'a' else 'SET NULL/DEFAULT'}); the task is "
                f"that deleting it deletes its comments. Hint: ON DELETE CASCADE."))
    track = conn.execute("SELECT min(track_id) FROM ex10_comment").fetchone()[0]
    album = conn.execute("SELECT min(album_id) FROM ex10_comment").fetchone()[0]
    with conn.transaction(force_rollback=True):
        none = _try_insert(conn, cols, None, None)
        both = _try_insert(conn, cols, track, album)
        conn.execute("DELETE FROM ex10_track WHERE track_id = %s", (track,))
        left = conn.execute("SELECT count(*) FROM ex10_comment WHERE track_id = %s", (track,)).fetchone()[0]
    if none is None:
        return CheckResult(False, (
            "A comment with neither track_id nor album_id was accepted: it belongs to nothing. Hint: "
            "CHECK (num_nonnulls(track_id, album_id) = 1)."))
    if both is None:
        return CheckResult(False, (
            "A comment on a track AND an album at once was accepted: a CHECK of 'at least one' (OR) is not "
            "'exactly one'. Hint: CHECK (num_nonnulls(track_id, album_id) = 1)."))
    if none != "23514" or both != "23514":
        return CheckResult(False, (
            f"Comments with no target or two targets are refused, but not by a CHECK constraint (SQLSTATE "
            f"{none}/{both}): drop or relax the old NOT NULL commentable_type/commentable_id and state the rule "
            "as CHECK (num_nonnulls(track_id, album_id) = 1)."))
    if left:
        return CheckResult(False, f"{left} comments still point at a deleted track.")
    return CheckResult(True, (
        "Each comment points at exactly one track or album through a real foreign key, a missing target is "
        "refused, and deleting a track deletes its comments: no orphan can exist."))


register(Exercise(
    id="10.live_email",
    title="Make the email unique among live customers only",
    prompt=("ex10_customer soft-deletes customers (deleted_at is set) and has UNIQUE (email). fan10@example.org "
            "left, and now wants to sign up again, which the constraint refuses. Change the table so that a "
            "deleted customer's email is free again, while two LIVE customers still can never share an email. "
            "Then run the check."),
    setup_fn=_setup_live_email,
    checker=_check_live_email,
    lesson="10_patterns",
    quiet_until_changed=True,  # no hint before the learner has changed anything
))

register(Exercise(
    id="10.no_orphans",
    title="Make this polymorphic table impossible to orphan",
    prompt=("ex10_comment attaches comments to ex10_track or ex10_album through a generic pair "
            "(commentable_type, commentable_id), which no foreign key protects. Turn it into an exclusive arc: "
            "columns track_id and album_id, filled from the pair for the 300 existing comments, each a foreign key "
            "whose target's deletion deletes its comments, and a rule that every comment has exactly one target. "
            "Then run the check."),
    setup_fn=_setup_no_orphans,
    checker=_check_no_orphans,
    lesson="10_patterns",
    quiet_until_changed=True,  # no hint before the learner has changed anything
))


# ------------------------------------------------------------------------------------------ polymorphic mappings

def polymorphic_mappings() -> dict[str, Any]:
    """SQLAlchemy mappings of a track's comments in the three designs of lesson 10, one registry each.

    ``"generic"``: no foreign key exists, so the join condition is spelled out and marked ``foreign()``;
    ``"arc"``: an ordinary one-to-many over ``comment_arc.track_id`` (``passive_deletes``: the database cascades);
    ``"join table"``: a many-to-many through ``track_comment``. Each value is the design's ``Track`` class, whose
    ``comments`` relationship loads the comments.
    """
    from sqlalchemy import Column, ForeignKey, Integer, Table, and_
    from sqlalchemy.orm import DeclarativeBase, Mapped, foreign, mapped_column, relationship

    class GenericBase(DeclarativeBase):
        pass

    class GenericComment(GenericBase):
        __tablename__ = "comments"
        comment_id: Mapped[int] = mapped_column(primary_key=True)
        commentable_type: Mapped[str]
        commentable_id: Mapped[int]
        body: Mapped[str]

    class GenericTrack(GenericBase):
        __tablename__ = "track"
        track_id: Mapped[int] = mapped_column(primary_key=True)
        comments: Mapped[list[GenericComment]] = relationship(
            viewonly=True,
            primaryjoin=lambda: and_(GenericComment.commentable_type == "track",
                                     foreign(GenericComment.commentable_id) == GenericTrack.track_id))

    class ArcBase(DeclarativeBase):
        pass

    class ArcComment(ArcBase):
        __tablename__ = "comment_arc"
        comment_id: Mapped[int] = mapped_column(primary_key=True)
        track_id: Mapped[int | None] = mapped_column(ForeignKey("track.track_id", ondelete="CASCADE"))
        body: Mapped[str]

    class ArcTrack(ArcBase):
        __tablename__ = "track"
        track_id: Mapped[int] = mapped_column(primary_key=True)
        comments: Mapped[list[ArcComment]] = relationship(passive_deletes=True)

    class JoinBase(DeclarativeBase):
        pass

    track_comment = Table(
        "track_comment", JoinBase.metadata,
        Column("track_id", Integer, ForeignKey("track.track_id", ondelete="CASCADE"), primary_key=True),
        Column("comment_id", Integer, ForeignKey("comments.comment_id", ondelete="CASCADE"), primary_key=True))

    class JoinComment(JoinBase):
        __tablename__ = "comments"
        comment_id: Mapped[int] = mapped_column(primary_key=True)
        body: Mapped[str]

    class JoinTrack(JoinBase):
        __tablename__ = "track"
        track_id: Mapped[int] = mapped_column(primary_key=True)
        comments: Mapped[list[JoinComment]] = relationship(secondary=track_comment)

    return {"generic": GenericTrack, "arc": ArcTrack, "join table": JoinTrack}
