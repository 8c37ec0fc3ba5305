"""Notebook 08 (migrations): the lesson's copy of ``plays``, Alembic in a temporary directory, measured locks,
rewrites, a concurrent writer, batched backfill, squawk, and two exercises.

Everything here creates and drops only objects whose names start with ``mig_`` (tables, indexes, constraints,
the Alembic version table); the lesson database's ``plays`` is only read.
"""
from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import psycopg
from sqlalchemy import BigInteger, Column, DateTime, ForeignKey, Integer, MetaData, String, Table, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from helpers.core.errors import WorkbookError
from helpers.exercises import CheckResult, Exercise, register
from helpers.locks import LOCK_MODES, locks_taken
from helpers.sessions import connect_like

__all__ = ["setup_copy", "alembic_demo", "lock_table", "ddl_with_retry", "rewrite", "step_locks",
           "Writer", "writer_during", "try_ddl", "backfill", "squawk", "EX_TABLE"]

COPY = "mig_plays"
SMALL = "mig_small"
EX_TABLE = "mig_ex"
# A writer's INSERT takes RowExclusiveLock; these modes conflict with it (docs, "Table-Level Locks").
BLOCKS_WRITES = ("ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock")


def server_major(conn: psycopg.Connection) -> int:
    return conn.info.server_version // 10000


# ---------------------------------------------------------------------------------------------- tables

def _copy(conn: psycopg.Connection, name: str, limit: int | None = None) -> int:
    conn.execute(f"DROP TABLE IF EXISTS {name} CASCADE")
    lim = f" LIMIT {int(limit)}" if limit else ""
    conn.execute(f"""CREATE TABLE {name} WITH (autovacuum_enabled = off) AS
        SELECT play_id, customer_id, track_id, played_at, ms_played::integer AS ms_played, device
        FROM plays ORDER BY play_id{lim}""")
    conn.execute(f"ALTER TABLE {name} ADD PRIMARY KEY (play_id)")
    conn.execute(f"ANALYZE {name}")
    return conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0]


def setup_copy(conn: psycopg.Connection) -> int:
    """(Re)create ``mig_plays`` (a copy of ``plays``) and ``mig_small`` (its first 1,000 rows); returns the copy's rows."""
    rows = _copy(conn, COPY)
    _copy(conn, SMALL, 1000)
    return rows


# ---------------------------------------------------------------------------------------------- Alembic

_ENV_PY = '''
from alembic import context

cfg = context.config
meta = cfg.attributes["metadata"]


def mine(obj, name, type_, reflected, compare_to):
    return type_ != "table" or name.startswith("mig_al_")


# one transaction per revision: without it Alembic runs ALL pending revisions in ONE transaction on PostgreSQL,
# and the locks of the first revision stay held until the last one commits
opts = dict(target_metadata=meta, version_table="mig_alembic_version", include_object=mine,
            transaction_per_migration=True)
if context.is_offline_mode():
    context.configure(url="postgresql://", literal_binds=True, dialect_name="postgresql", **opts)
    context.execute("SET lock_timeout = '2s'")   # in the SQL a DBA runs
else:
    connection = cfg.attributes["connection"]
    connection.exec_driver_sql("SET lock_timeout = '2s'")   # a migration never queues for long (lesson 08, section 3)
    connection.commit()
    context.configure(connection=connection, **opts)
with context.begin_transaction():
    context.run_migrations()
'''

# revision 0002 as a human edits it: the rename kept as a rename (the rows keep their tags)
_REV2_EDITED = '''def upgrade() -> None:
    op.alter_column('mig_al_track_tag', 'tag', new_column_name='label')
    op.add_column('mig_al_track_tag', sa.Column('added_at', sa.DateTime(timezone=True),
                                                server_default=sa.text('now()'), nullable=True))


def downgrade() -> None:
    op.drop_column('mig_al_track_tag', 'added_at')
    op.alter_column('mig_al_track_tag', 'label', new_column_name='tag')
'''

# revision 0003, hand-written: autogenerate never writes CONCURRENTLY, nor the COMMIT it needs
_REV3 = '''def upgrade() -> None:
    with op.get_context().autocommit_block():   # CREATE INDEX CONCURRENTLY cannot run in a transaction block
        op.create_index('mig_al_track_tag_track', 'mig_al_track_tag', ['track_id'], postgresql_concurrently=True)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index('mig_al_track_tag_track', table_name='mig_al_track_tag', postgresql_concurrently=True)
'''


def _models(version: int) -> Any:
    """The lesson's SQLAlchemy model in two versions: v2 renames ``tag`` to ``label`` and adds ``added_at``."""
    class Base(DeclarativeBase):
        metadata = MetaData()

    if version == 1:
        class TrackTag(Base):
            __tablename__ = "mig_al_track_tag"
            tag_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
            track_id: Mapped[int] = mapped_column(ForeignKey("track.track_id"))
            tag: Mapped[str] = mapped_column(String(40))
    else:
        class TrackTag(Base):  # type: ignore[no-redef]
            __tablename__ = "mig_al_track_tag"
            tag_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
            track_id: Mapped[int] = mapped_column(ForeignKey("track.track_id"))
            label: Mapped[str] = mapped_column(String(40))
            added_at: Mapped[Any] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # the foreign key needs track in the same metadata (a stub: include_object keeps it out of the comparison)
    Table("track", Base.metadata, Column("track_id", Integer, primary_key=True))
    return Base.metadata


def _body(path: Path) -> str:
    """The upgrade() and downgrade() functions of a revision file (without its header, which has a date)."""
    text = path.read_text()
    return text[text.index("def upgrade"):].strip()


@dataclass
class AlembicDemo:
    rev1: str = ""
    rev2: str = ""
    rev2_error: str = ""            # revision 0002 as generated, on a table with rows
    tags_dropadd: tuple[int, int] = (0, 0)   # non-NULL tags before / after 0002 with label made nullable
    rev2_edited: str = ""
    tags_rename: tuple[int, int] = (0, 0)    # non-NULL tags before / after the hand-edited 0002
    rev3: str = ""
    indexes_after_0003: list[str] = field(default_factory=list)
    offline_sql: str = ""
    tables_after_upgrade: list[str] = field(default_factory=list)
    columns_after_v2: list[str] = field(default_factory=list)
    columns_after_downgrade: list[str] = field(default_factory=list)
    tags_after_downgrade: int = 0
    tables_after_base: list[str] = field(default_factory=list)


def alembic_demo(db: Any) -> AlembicDemo:
    """Autogenerate two revisions from the model (v1, then v2), apply them to a table with rows, hand-edit the
    rename, add a CONCURRENTLY revision, downgrade, print offline SQL.

    The script directory is a temporary directory, deleted at the end; nothing is written to the checkout. The
    version table is ``mig_alembic_version``; both it and the table are dropped again (downgrade to base).
    """
    import alembic
    import sqlalchemy.exc
    from alembic import command
    from alembic.config import Config

    out = AlembicDemo()
    tmp = Path(tempfile.mkdtemp(prefix="pdw_alembic_"))
    try:
        (tmp / "versions").mkdir()
        (tmp / "env.py").write_text(_ENV_PY)
        shutil.copy(Path(alembic.__file__).parent / "templates" / "generic" / "script.py.mako", tmp)
        buf = io.StringIO()
        cfg = Config(output_buffer=buf, stdout=io.StringIO())  # no 'Generating <temp path>' lines
        cfg.set_main_option("script_location", str(tmp))

        def cols() -> list[str]:
            return [r[0] for r in db.conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'mig_al_track_tag' "
                "ORDER BY ordinal_position")]

        def tables() -> list[str]:
            return [r[0] for r in db.conn.execute(
                "SELECT relname FROM pg_class WHERE relname LIKE 'mig\\_al%' AND relkind = 'r' ORDER BY 1")]

        def tags() -> int:   # rows whose tag (or label) is not NULL
            col = "label" if "label" in cols() else "tag"
            return db.conn.execute(f"SELECT count({col}) FROM mig_al_track_tag").fetchone()[0]

        def online(fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
            with db.engine.connect() as c:
                cfg.attributes["connection"] = c
                try:
                    with contextlib.redirect_stdout(io.StringIO()):  # "Generating <temp path> ... done"
                        return fn(cfg, *args, **kw)
                finally:
                    c.rollback()
                    c.exec_driver_sql("RESET lock_timeout")   # the pooled connection goes back as it came
                    c.commit()

        def write(script: Any, body: str) -> None:
            path = Path(script.path)
            text = path.read_text()
            path.write_text(text[:text.index("def upgrade")] + body)
            shutil.rmtree(path.parent / "__pycache__", ignore_errors=True)   # no stale compiled revision

        with db.engine.begin() as c:  # start clean if a previous run was interrupted
            c.exec_driver_sql("DROP TABLE IF EXISTS mig_al_track_tag, mig_alembic_version")
        cfg.attributes["metadata"] = _models(1)
        script1 = online(command.revision, message="track tags", autogenerate=True, rev_id="0001")
        out.rev1 = _body(Path(script1.path))
        online(command.upgrade, "head")
        out.tables_after_upgrade = tables()
        db.conn.execute("""INSERT INTO mig_al_track_tag (tag_id, track_id, tag)
            SELECT row_number() OVER (ORDER BY track_id), track_id, (ARRAY['calm', 'live', 'remix'])[
                row_number() OVER (ORDER BY track_id)] FROM (SELECT track_id FROM track ORDER BY track_id LIMIT 3) t""")

        cfg.attributes["metadata"] = _models(2)
        script2 = online(command.revision, message="tag label", autogenerate=True, rev_id="0002")
        out.rev2 = generated = _body(Path(script2.path))
        try:  # as generated: ADD COLUMN label ... NOT NULL on a table with rows
            online(command.upgrade, "head")
        except sqlalchemy.exc.DBAPIError as exc:
            orig = exc.orig
            out.rev2_error = f"{orig.sqlstate}: {orig.diag.message_primary}"
        # as generated but with the added columns nullable: it runs, and the tags are gone (the downgrade
        # brings the column back, not the tags)
        write(script2, re.sub(r"(Column\('(?:label|tag)'.*?nullable=)False", r"\1True", generated))
        before = tags()
        online(command.upgrade, "head")
        out.tags_dropadd = (before, tags())
        online(command.downgrade, "-1")
        db.conn.execute("UPDATE mig_al_track_tag SET tag = (ARRAY['calm', 'live', 'remix'])[tag_id]")
        # as a human edits it: a rename
        write(script2, _REV2_EDITED)
        out.rev2_edited = _REV2_EDITED.strip()
        before = tags()
        online(command.upgrade, "head")
        out.tags_rename = (before, tags())
        out.columns_after_v2 = cols()
        script3 = online(command.revision, message="track index", rev_id="0003")
        write(script3, _REV3)
        out.rev3 = _REV3.strip()
        online(command.upgrade, "head")
        out.indexes_after_0003 = [r[0] for r in db.conn.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'mig_al_track_tag' ORDER BY 1")]
        online(command.downgrade, "0001")
        out.columns_after_downgrade = cols()
        out.tags_after_downgrade = tags()
        command.upgrade(cfg, "base:head", sql=True)
        out.offline_sql = "\n".join(line for line in buf.getvalue().splitlines()
                                    if line.strip() and not line.startswith("--"))
        online(command.downgrade, "base")
        with db.engine.begin() as c:
            c.exec_driver_sql("DROP TABLE IF EXISTS mig_alembic_version")
        out.tables_after_base = tables()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


# ---------------------------------------------------------------------------------------------- lock levels

LOCK_STATEMENTS = [
    ("SELECT", "SELECT count(*) FROM mig_small"),
    ("INSERT / UPDATE / DELETE", "UPDATE mig_small SET ms_played = ms_played WHERE play_id < 0"),
    ("CREATE INDEX", "CREATE INDEX mig_small_track ON mig_small (track_id)"),
    ("ADD COLUMN (nullable)", "ALTER TABLE mig_small ADD COLUMN note text"),
    ("ADD COLUMN ... DEFAULT 0", "ALTER TABLE mig_small ADD COLUMN n integer DEFAULT 0"),
    ("ALTER COLUMN ... TYPE bigint", "ALTER TABLE mig_small ALTER COLUMN ms_played TYPE bigint"),
    ("ALTER COLUMN ... SET NOT NULL", "ALTER TABLE mig_small ALTER COLUMN device SET NOT NULL"),
    ("ADD CHECK ... NOT VALID", "ALTER TABLE mig_small ADD CONSTRAINT mig_c CHECK (ms_played >= 0) NOT VALID"),
    ("VALIDATE CONSTRAINT", "ALTER TABLE mig_small VALIDATE CONSTRAINT mig_small_ms_nonneg"),
    ("ADD FOREIGN KEY ... NOT VALID", "ALTER TABLE mig_small ADD CONSTRAINT mig_fk FOREIGN KEY (track_id) "
                                      "REFERENCES track NOT VALID"),
    ("RENAME COLUMN", "ALTER TABLE mig_small RENAME COLUMN device TO device_kind"),
    ("DROP COLUMN", "ALTER TABLE mig_small DROP COLUMN device"),
    ("ANALYZE", "ANALYZE mig_small"),
    ("TRUNCATE", "TRUNCATE mig_small"),
]


def lock_table(conn: psycopg.Connection) -> Any:
    """Each statement's lock on ``mig_small`` (and ``track`` for the foreign key), measured from ``pg_locks``.

    Every statement runs in a transaction that is rolled back (helpers.locks.locks_taken), so mig_small is unchanged.
    """
    import pandas as pd

    conn.execute("ALTER TABLE mig_small DROP CONSTRAINT IF EXISTS mig_small_ms_nonneg")
    conn.execute("ALTER TABLE mig_small ADD CONSTRAINT mig_small_ms_nonneg CHECK (ms_played >= 0) NOT VALID")
    rows = []
    for label, sql in LOCK_STATEMENTS:
        got = locks_taken(conn, sql, relations=("mig_small", "track"))
        mode = got.get("mig_small", "")
        rows.append({"statement": label, "lock on the table": mode,
                     "conflicts with writes (Table 13.2)": "yes" if mode in BLOCKS_WRITES else "no",
                     "conflicts with reads (Table 13.2)": "yes" if mode == "AccessExclusiveLock" else "no",
                     "other table": (f"track: {got['track']}" if "track" in got else "")})
    conn.execute("ALTER TABLE mig_small DROP CONSTRAINT mig_small_ms_nonneg")
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------- retry

@dataclass
class RetryRun:
    attempts: int = 0
    failures: list[str] = field(default_factory=list)
    ok: bool = False


def ddl_with_retry(source: Any, sql: str, *, lock_timeout: str = "100ms", attempts: int = 20,
                   backoff: float = 0.05, on_fail: Callable[[int], Any] | None = None) -> RetryRun:
    """Run one DDL statement with a short ``lock_timeout``; on 55P03 (lock not available) wait and try again.

    A waiting ALTER TABLE holds up every query queued behind it only for ``lock_timeout``; a retry later gets its
    turn. ``on_fail(n)`` is called after failed attempt n (the notebook uses it to end the long transaction).
    """
    run = RetryRun()
    conn = connect_like(source, "pdw:08 migration")
    try:
        conn.execute("SELECT set_config('lock_timeout', %s, false)", (lock_timeout,))
        for n in range(1, attempts + 1):
            run.attempts = n
            try:
                conn.execute(sql)
                run.ok = True
                return run
            except psycopg.errors.LockNotAvailable as exc:
                run.failures.append(f"attempt {n}: 55P03 {exc.diag.message_primary}")
                if on_fail is not None:
                    on_fail(n)
                time.sleep(backoff * min(n, 10))  # backoff between attempts, not a wait for a state
        return run
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------- rewrites

def relfilenode(conn: psycopg.Connection, table: str) -> int:
    return conn.execute("SELECT pg_relation_filenode(%s::regclass)", (table,)).fetchone()[0]


def rewrite(conn: psycopg.Connection, sql: str, table: str = COPY) -> dict[str, Any]:
    """Run ``sql``; return whether the table's file changed (a rewrite) and the seconds it took."""
    before = relfilenode(conn, table)
    t0 = time.perf_counter()
    conn.execute(sql)
    seconds = time.perf_counter() - t0
    after = relfilenode(conn, table)
    return {"sql": sql, "rewrite": after != before, "seconds": seconds}


def step_locks(conn: psycopg.Connection, sql: str, tables: tuple[str, ...] = (COPY,), *,
               debug: bool = False) -> dict[str, Any]:
    """Run ``sql`` in its own transaction and commit it; return the strongest lock it held on ``tables`` and the time.

    Unlike helpers.locks.locks_taken this keeps the change (the lesson goes on from it). With ``debug`` the
    statement runs with ``client_min_messages = debug1`` (for that transaction only) and the server's messages
    are returned under "notices" (e.g. SET NOT NULL saying that a valid CHECK makes its scan unnecessary).
    """
    notices: list[str] = []

    def on_notice(diag: Any) -> None:
        notices.append(diag.message_primary or "")

    with conn.transaction():
        if debug:
            conn.execute("SET LOCAL client_min_messages = debug1")
            conn.add_notice_handler(on_notice)
        t0 = time.perf_counter()
        try:
            conn.execute(sql)
        finally:
            if debug:
                conn.remove_notice_handler(on_notice)
        seconds = time.perf_counter() - t0
        rows = conn.execute("""SELECT c.relname, l.mode FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
            WHERE l.pid = pg_backend_pid() AND l.granted AND c.relname = ANY(%s)""", (list(tables),)).fetchall()
    modes: dict[str, str] = {}
    for rel, mode in rows:
        if rel not in modes or LOCK_MODES.index(mode) > LOCK_MODES.index(modes[rel]):
            modes[rel] = mode
    return {"locks": modes, "seconds": seconds, "notices": notices}


# ---------------------------------------------------------------------------------------------- the writer

class Writer:
    """A thread that INSERTs one row at a time into ``table`` (autocommit) and records when each one finished.

    Rows get negative play_ids, so they never collide with the copied ones. Use as a context manager; it has
    started writing (a few rows done) when ``with`` enters.
    """

    def __init__(self, source: Any, table: str = COPY, lock_timeout: str = "60s") -> None:
        self.table = table
        self.conn = connect_like(source, "pdw:08 writer")
        self.conn.execute("SELECT set_config('lock_timeout', %s, false)", (lock_timeout,))
        self.done: list[float] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="pdw-writer")
        self._next = -1 - (self.conn.execute(f"SELECT coalesce(-min(play_id), 0) FROM {table} "
                                             "WHERE play_id < 0").fetchone()[0])

    def _loop(self) -> None:
        sql = (f"INSERT INTO {self.table} (play_id, customer_id, track_id, played_at, ms_played, device) "
               "VALUES (%s, 1, 1, now(), 1000, 'web')")
        while not self._stop.is_set():
            try:
                self.conn.execute(sql, (self._next,))
                self._next -= 1
                self.done.append(time.monotonic())
            except psycopg.Error as exc:
                self.errors.append(f"{exc.sqlstate}: {exc.diag.message_primary}")
                return

    def __enter__(self) -> "Writer":
        self._thread.start()
        deadline = time.monotonic() + 20
        while len(self.done) < 5:
            if self.errors or time.monotonic() > deadline:
                raise WorkbookError(f"The writer did not start writing: {self.errors or 'no row in 20 s'}.")
            time.sleep(0.005)  # polling the writer's own counter
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(30)
        self.conn.close()

    def rows_between(self, t0: float, t1: float) -> int:
        return sum(1 for t in list(self.done) if t0 <= t <= t1)

    def longest_gap(self, t0: float, t1: float) -> float:
        """The longest time between two finished INSERTs in [t0, t1] (how long the writer was held up)."""
        ts = [t0] + [t for t in list(self.done) if t0 <= t <= t1] + [t1]
        return max(b - a for a, b in zip(ts, ts[1:]))


def writer_during(source: Any, conn: psycopg.Connection, sql: str, table: str = COPY) -> dict[str, Any]:
    """Run ``sql`` on ``conn`` while a :class:`Writer` inserts; return the writer's rows during it and around it."""
    seen: set[str] = set()
    # when the watcher first and last saw the DDL's strongest lock granted: while a lock that conflicts with the
    # writer's RowExclusiveLock is granted, no INSERT can finish (an exact count, not a timing)
    held: list[float] = []
    stop = threading.Event()
    monitor = connect_like(source, "pdw:08 monitor")

    def watch() -> None:  # the DDL's own lock on the table, read from pg_locks while it runs
        while not stop.is_set():
            rows = monitor.execute("SELECT mode FROM pg_locks WHERE pid = %s AND relation = %s::regclass AND granted",
                                   (conn.info.backend_pid, table)).fetchall()
            now = time.monotonic()
            modes = {r[0] for r in rows}
            seen.update(modes)
            if modes:
                held.append(now)
            time.sleep(0.02)  # polling interval only (pg_locks takes every lock-manager partition lock: not faster)

    watcher = threading.Thread(target=watch, daemon=True, name="pdw-lock-watch")
    with Writer(source, table) as w:
        t0 = time.monotonic()
        watcher.start()
        error = None
        try:
            conn.execute(sql)
        except psycopg.Error as exc:
            error = f"{exc.sqlstate}: {exc.diag.message_primary}"
        t1 = time.monotonic()
        stop.set()
        watcher.join(10)
        monitor.close()
        during = w.rows_between(t0, t1)
        # strictly inside [first seen, last seen] of the lock; 0 expected for a lock that conflicts with INSERT
        in_lock = sum(1 for t in list(w.done) if held and held[0] < t < held[-1])
        gap = w.longest_gap(t0, t1)
        # the writer's normal rate, measured for as long as the DDL took (at least 0.3 s)
        t2 = time.monotonic()
        while time.monotonic() - t2 < max(0.3, t1 - t0):
            time.sleep(0.01)
        after = w.rows_between(t2, time.monotonic())
        errors = list(w.errors)
    strongest = max(seen, key=LOCK_MODES.index) if seen else None
    return {"sql": sql, "seconds": t1 - t0, "rows_during": during, "rows_after": after, "error": error,
            "lock": strongest, "lock_seen_seconds": (held[-1] - held[0]) if held else 0.0, "rows_in_lock": in_lock,
            "longest_gap": gap, "writer_errors": errors}


def try_ddl(conn: psycopg.Connection, sql: str) -> str:
    """Run ``sql``; return "OK" or "ERROR <sqlstate>: <message>" without the DETAIL (which names a data value)."""
    try:
        conn.execute(sql)
    except psycopg.Error as exc:
        return f"ERROR {exc.sqlstate}: {(exc.diag.message_primary or '').strip()}"
    return "OK"


# ---------------------------------------------------------------------------------------------- backfill

def backfill(conn: psycopg.Connection, lo: int, hi: int, batch: int, *, progress: bool = True) -> dict[str, Any]:
    """``UPDATE mig_plays SET ms_bucket = ms_played / 60000`` for play_id in [lo, hi), ``batch`` ids per transaction.

    Returns batches, total seconds and the longest batch (how long its row locks were held).
    """
    from tqdm.auto import tqdm

    times = []
    bar = tqdm(total=hi - lo, unit="rows", desc=f"batch {batch:,}", leave=False, disable=not progress)
    t0 = time.perf_counter()
    for start in range(lo, hi, batch):
        end = min(start + batch, hi)
        b0 = time.perf_counter()
        conn.execute("UPDATE mig_plays SET ms_bucket = ms_played / 60000 WHERE play_id >= %s AND play_id < %s",
                     (start, end))
        times.append(time.perf_counter() - b0)
        bar.update(end - start)
    bar.close()
    return {"batch": batch, "batches": len(times), "total": time.perf_counter() - t0, "longest": max(times),
            "median": sorted(times)[len(times) // 2]}


# ---------------------------------------------------------------------------------------------- squawk

def squawk(sql: str) -> list[tuple[int, str]]:
    """Lint ``sql`` with squawk (squawk-cli); returns (statement number, rule) pairs, in order.

    Statement numbers count the non-empty statements of ``sql`` from 1 (statements are split on ``;`` at line ends).
    """
    exe = shutil.which("squawk") or str(Path(__import__("sys").executable).parent / "squawk")
    if not Path(exe).exists():
        raise WorkbookError("squawk is not installed: run `pip install squawk-cli` (it is in the workbook's "
                            "dependencies).")
    with tempfile.TemporaryDirectory(prefix="pdw_squawk_") as tmp:
        path = Path(tmp) / "migration.sql"
        path.write_text(sql)
        proc = subprocess.run([exe, "--reporter", "json", str(path)], capture_output=True, text=True, timeout=60)
    try:
        found = json.loads(proc.stdout)
    except ValueError:
        found = None
    if not isinstance(found, list):
        raise WorkbookError(f"squawk did not report (exit code {proc.returncode}): "
                            f"{(proc.stderr or proc.stdout).strip()[:300]}")
    # line numbers -> statement numbers
    line_of: dict[int, int] = {}
    lines = sql.splitlines()
    stmt = 1
    for i, line in enumerate(lines):
        line_of[i] = stmt
        if line.rstrip().endswith(";"):
            stmt += 1
    out = []
    for f in found:
        out.append((line_of.get(f["line"], stmt), f["rule_name"]))
    return sorted(set(out))


# ---------------------------------------------------------------------------------------------- exercises

EX_ROWS = 200_000


def _setup_ex(conn: psycopg.Connection) -> None:
    n = conn.execute("SELECT count(*) FROM plays").fetchone()[0]
    _copy(conn, EX_TABLE, min(EX_ROWS, n))


def _statements(answer: str) -> list[str]:
    return [s.strip() for s in re.split(r";\s*(?:\n|$)", answer) if s.strip() and not s.strip().startswith("--")]


# The longest the writer may wait during the learner's migration. A correct answer holds a conflicting lock for
# milliseconds; the bound is wide so that a stall of the shared machine never refuses one.
MAX_WRITER_WAIT = 1.5


def _run_migration(conn: psycopg.Connection, answer: str) -> tuple[dict[str, Any], str | None]:
    """Run the learner's statements (each on its own, autocommit) while a writer inserts into mig_ex.

    They run on a connection of their own (a ``SET`` in the answer does not stay on the lesson's connection).
    After each statement that leaves no transaction open, the next one is sent only once the writer has
    committed another row (as in production, where the writer never pauses between two migration steps).
    """
    before = relfilenode(conn, EX_TABLE)
    err = None
    updates = 0
    learner = connect_like(conn, "pdw:08 learner")
    try:
        with Writer(conn, EX_TABLE) as w:
            t0 = time.monotonic()
            for stmt in _statements(answer):
                try:
                    learner.execute(stmt)
                except psycopg.Error as exc:
                    err = f"{exc.sqlstate}: {(exc.diag.message_primary or '').strip()}"
                    if re.search(r"(?i)set\s+not\s+null", stmt):
                        err += " [set not null]"
                    break
                if re.match(r"(?is)\s*update\b", stmt):
                    updates += 1
                if learner.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                    n0, deadline = len(w.done), time.monotonic() + 10
                    while len(w.done) <= n0 and not w.errors and time.monotonic() < deadline:
                        time.sleep(0.005)  # polling the writer's own counter
            if learner.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                learner.execute("ROLLBACK")  # a BEGIN without its COMMIT, or a failed statement inside one
            t1 = time.monotonic()
            stats = {"rows_during": w.rows_between(t0, t1), "longest_gap": w.longest_gap(t0, t1),
                     "writer_errors": list(w.errors), "updates": updates}
    finally:
        learner.close()
    stats["rewrite"] = relfilenode(conn, EX_TABLE) != before
    return stats, err


def _too_long(stats: dict[str, Any]) -> str | None:
    """The hint when the writer waited longer than MAX_WRITER_WAIT during the migration, else None."""
    if stats["longest_gap"] <= MAX_WRITER_WAIT:
        return None
    return (f"The writer waited {stats['longest_gap']:.1f} s for one INSERT (the bound is {MAX_WRITER_WAIT} s). "
            "A lock that conflicts with its RowExclusiveLock (ALTER TABLE's ACCESS EXCLUSIVE, LOCK TABLE, a plain "
            "CREATE INDEX's SHARE) is held until the transaction that took it ends: do not wrap the DDL in "
            "BEGIN ... COMMIT with other work, and keep each migration step in a short transaction of its own.")


def _check_not_null(conn: psycopg.Connection, answer: Any) -> CheckResult:
    if not _statements(str(answer)):
        return CheckResult(False, "The migration is empty: give the SQL statement(s) as one string.")
    rows = conn.execute(f"SELECT count(*) FROM {EX_TABLE}").fetchone()[0]
    # rows an UPDATE touched get a newer xmin than this transaction id (statistics counters lag; xmin does not)
    x0 = conn.execute("SELECT (pg_current_xact_id()::text::bigint % 4294967296)::text").fetchone()[0]
    stats, err = _run_migration(conn, str(answer))
    if err:
        _setup_ex(conn)
        hint = ""
        if err.startswith("23502") and err.endswith("[set not null]"):
            err = err.removesuffix(" [set not null]")
            hint = (" SET NOT NULL found NULLs: rows the writer inserted after your UPDATE, with no default. "
                    "ADD COLUMN with a constant DEFAULT gives existing and new rows the value at once.")
        elif err.startswith("23502"):
            hint = (" ADD COLUMN ... NOT NULL without a DEFAULT fails on a table that has rows: every existing "
                    "row would be NULL. Give it a constant default.")
        return CheckResult(False, f"The migration failed with {err}.{hint} The table was set up again.")
    col = conn.execute("""SELECT a.attnotnull, pg_get_expr(d.adbin, d.adrelid)
        FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid = %s::regclass AND a.attname = 'plan' AND NOT a.attisdropped""", (EX_TABLE,)).fetchone()
    updated = conn.execute(f"SELECT count(*) FROM {EX_TABLE} WHERE play_id > 0 AND age(xmin) < age(%s::xid)",
                           (x0,)).fetchone()[0]
    wrong = None
    if col is None:
        wrong = "There is no column plan on mig_ex."
    elif stats["rewrite"]:
        wrong = ("The table was rewritten (its relfilenode changed): a volatile default such as clock_timestamp() "
                 "or random(), "
                 "or a type change, copies every row under an ACCESS EXCLUSIVE lock that blocks the writer (and "
                 "every reader) for the whole copy. Use a constant (or any non-volatile) default.")
    elif updated >= rows // 2:
        n = stats["updates"]
        wrong = (f"{updated:,} of the {rows:,} rows were UPDATEd ({n} UPDATE statement{'s' if n != 1 else ''}): "
                 "rewriting every row leaves as many dead row versions and locks each row until its statement "
                 "commits. Since PostgreSQL 11 ADD COLUMN with a constant DEFAULT fills existing rows without "
                 "touching them.")
    elif _too_long(stats):
        wrong = _too_long(stats)
    elif not col[0]:
        wrong = "Column plan accepts NULLs: it must be NOT NULL."
    elif col[1] is None or "free" not in col[1]:
        wrong = f"Column plan's default is {col[1]!r}: it must be 'free'."
    nulls = conn.execute(f"SELECT count(*) FROM {EX_TABLE} WHERE plan IS DISTINCT FROM 'free' AND play_id > 0") \
        .fetchone()[0] if col is not None else 0
    if wrong is None and nulls:
        wrong = f"{nulls:,} existing rows do not have plan = 'free'."
    if stats["writer_errors"]:
        wrong = wrong or f"The writer failed: {stats['writer_errors'][0]}."
    if wrong:
        _setup_ex(conn)
        return CheckResult(False, wrong + " The table was set up again.")
    return CheckResult(True, f"plan is NOT NULL DEFAULT 'free' on all {rows:,} rows, without a rewrite or an UPDATE; "
                             f"the writer inserted {stats['rows_during']:,} rows meanwhile and never waited longer than "
                             f"{stats['longest_gap'] * 1000:,.0f} ms.")


register(Exercise(
    id="08.not_null_column",
    title="Add a NOT NULL column without blocking writes",
    prompt=("mig_ex is a copy of plays that a writer keeps inserting into. Write a migration (SQL, one string; "
            "several statements separated by ';' are run one after another, each in its own transaction) that adds "
            "a column plan of type text, NOT NULL, whose value is 'free' for every existing and new row. The check "
            "runs it while a writer inserts and refuses a rewrite of the table, an UPDATE of every row, or a "
            "migration during which the writer waited longer than 1.5 s for one INSERT."),
    setup_fn=_setup_ex,
    checker=_check_not_null,
    answer_kind=str,
    answer_hint="the migration SQL as a string",
    lesson="08_migrations",
))


def _check_index(conn: psycopg.Connection, answer: Any) -> CheckResult:
    stmts = _statements(str(answer))
    if not stmts:
        return CheckResult(False, "The migration is empty: give the SQL statement(s) as one string.")
    for stmt in stmts:
        if re.match(r"(?is)\s*create\s+(unique\s+)?index\b", stmt) and "concurrently" not in stmt.lower():
            try:
                mode = locks_taken(conn, stmt, relations=(EX_TABLE,)).get(EX_TABLE, "")
            except psycopg.Error as exc:
                return CheckResult(False, f"{stmt!r:.80} failed: {exc.diag.message_primary}.")
            if mode in BLOCKS_WRITES:
                return CheckResult(False, f"A plain CREATE INDEX takes {mode} on mig_ex (measured from pg_locks), "
                                          "which conflicts with the writer's RowExclusiveLock: INSERT, UPDATE and "
                                          "DELETE wait for the whole build. Which keyword builds it without that?")
    stats, err = _run_migration(conn, str(answer))
    idx = conn.execute("""SELECT c.relname, i.indisvalid, pg_get_indexdef(i.indexrelid)
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE i.indrelid = %s::regclass AND NOT i.indisprimary""", (EX_TABLE,)).fetchall()
    invalid = [r[0] for r in idx if not r[1]]
    # any valid index whose first key column is customer_id (from the catalog, not the index definition's text)
    good = conn.execute("""SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
        WHERE i.indrelid = %s::regclass AND i.indisvalid AND a.attname = 'customer_id'""", (EX_TABLE,)).fetchall()
    if err and err.startswith("25001"):
        _setup_ex(conn)
        return CheckResult(False, "CREATE INDEX CONCURRENTLY cannot run inside a transaction block (25001): it commits "
                                  "between its phases. Send it on its own, without BEGIN.")
    if invalid:
        _setup_ex(conn)
        return CheckResult(False, f"The build failed ({err}) and left the INVALID index {invalid[0]}: it is never used "
                                  "by queries (and once a build has reached its ready phase, it is still updated on "
                                  "every write). Drop it (DROP INDEX CONCURRENTLY) "
                                  "and build a valid one; a UNIQUE index cannot be built over duplicates.")
    if err:
        _setup_ex(conn)
        return CheckResult(False, f"The migration failed with {err}. The table was set up again.")
    if not good:
        _setup_ex(conn)
        return CheckResult(False, "There is no valid index that starts with customer_id on mig_ex.")
    if _too_long(stats):
        _setup_ex(conn)
        return CheckResult(False, _too_long(stats) + " The table was set up again.")
    return CheckResult(True, f"A valid index on mig_ex led by customer_id, built while the writer inserted "
                             f"{stats['rows_during']:,} rows and never waited longer than "
                             f"{stats['longest_gap'] * 1000:,.0f} ms.")


register(Exercise(
    id="08.index_online",
    title="Index a table that is being written to",
    prompt=("Queries look plays up by customer. Write a migration (SQL string) that adds an index on "
            "mig_ex (customer_id) while a writer keeps inserting: the writer must not wait for the build, and "
            "the migration must not leave anything broken behind. The check refuses a migration during which the "
            "writer waited longer than 1.5 s for one INSERT."),
    setup_fn=_setup_ex,
    checker=_check_index,
    answer_kind=str,
    answer_hint="the migration SQL as a string",
    lesson="08_migrations",
))
