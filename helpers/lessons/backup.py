"""Lesson 12 (backup and restore): logical dumps, base backups with archived WAL, PITR, incremental backups, replicas.

Everything that breaks or rebuilds a server happens on private throw-away servers (:mod:`helpers.private`), never
on the learner's. Logical dumps read the lesson database on whichever server the notebook uses, with the embedded
``pg_dump`` 18 (which can dump any server from 9.2 on).

* :func:`dump`, :func:`restore`, :func:`toc_kinds`, :func:`restore_table_as`: logical backups.
* :func:`store_primary`, :func:`base_backup`, :func:`accident`, :func:`recover`, :func:`waldump_counts`: physical
  backups and point-in-time recovery.
* Exercises ``12.restore_lines`` and ``12.pitr`` (solutions in :mod:`helpers.lessons.solutions.backup`).
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import psycopg
from psycopg import sql as pgsql

from helpers import private
from helpers.core import settings
from helpers.core.errors import WorkbookError
from helpers.exercises import CheckResult, Exercise, register
from helpers.timing import as_connection

__all__ = ["dump", "restore", "drop_restored", "copy_tables", "toc_kinds", "restore_table_as", "dir_bytes", "size", "store_primary",
           "base_backup", "accident", "recover", "waldump_counts", "wait_archived", "counts", "Accident",
           "STORE_TABLES", "exercise_scenario", "wal_summary", "exercise_dump_path", "standby", "wait_replayed",
           "wait_received", "copy_rows", "globals_demo", "table_rows", "restored_summary"]

#: The tables the physical demos copy to a private server (the big plays table is left out to keep the run short).
STORE_TABLES = ("customer", "invoice", "invoice_line")


def size(n: int) -> str:
    """A measured size as ``~12.3 MB`` (the ``~`` marks it for the sanitizer: it differs by server and run)."""
    if n >= 1 << 20:
        return f"~{n / 2**20:.1f} MB"
    return f"~{max(n, 0) / 1024:.0f} kB"


def dir_bytes(path: Path | str) -> int:
    """Bytes of a file, or of every file under a directory."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


# ---------------------------------------------------------------- logical backups

def _q(path: Path | str) -> str:
    """A path for a shell command line (archive_command, restore_command): quoted if it needs it."""
    import shlex

    return shlex.quote(str(path))


def _conninfo(conn: psycopg.Connection) -> tuple[str, dict]:
    """libpq connection string of a psycopg connection's database, and the environment that carries its password."""
    info = conn.info
    parts = {"host": info.host, "port": info.port, "user": info.user, "dbname": info.dbname}
    env = {"PGPASSWORD": info.password} if info.password else {}
    return psycopg.conninfo.make_conninfo(**{k: v for k, v in parts.items() if v}), env


def dump(db: Any, target: Path | str, fmt: str = "custom", jobs: int = 1,
         tables: Sequence[str] = (), compress: str | None = None, cpu: bool = False) -> Any:
    """``pg_dump`` the lesson database to ``target`` (``custom``: a file; ``directory``: a folder); returns seconds,
    or with ``cpu`` (seconds, CPU seconds pg_dump itself used: its compressing, not the server's work)."""
    import resource

    conn = as_connection(db)
    conninfo, env = _conninfo(conn)
    target = Path(target)
    args = ["-d", conninfo, "-F", fmt[0], "-f", target, "--no-owner", "--no-privileges"]
    if jobs > 1:
        args += ["-j", jobs]
    if compress:
        args += ["-Z", compress]
    for t in tables:
        args += ["-t", t]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    private.run_tool("pg_dump", *args, env=env, timeout=600)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return (seconds, used) if cpu else seconds


#: pg_restore 17+ sends ``SET transaction_timeout = 0`` (a setting added in PostgreSQL 17) on each of its
#: connections; an older server rejects it, and that error is harmless (the restore goes on without it).
_HARMLESS = re.compile(r'unrecognized configuration parameter "transaction_timeout"')


def restore(db: Any, source: Path | str, suffix: str, jobs: int = 1, tables: Sequence[str] = ()) -> tuple[str, float]:
    """``pg_restore`` a dump into a fresh database of the workbook's own on the lesson's server
    (``pdw_<role>_12_backup_restore_<suffix>``, replaced if it exists); returns its name and the seconds taken."""
    from helpers import db as hdb

    conn = as_connection(db)
    name = hdb.db_name(conn.info.user, f"12_backup_restore_{suffix}")
    tgt = getattr(db, "target", None) or hdb.target()
    with hdb.connect(tgt=tgt) as admin:
        hdb.drop_own(admin, name)
        hdb.create_own(admin, name, kind="scratch", lesson="12_backup_restore", namespace=settings.namespace())
    _, env = _conninfo(conn)
    info = conn.info
    conninfo = psycopg.conninfo.make_conninfo(**{k: v for k, v in {"host": info.host, "port": info.port,
                                                                   "user": info.user, "dbname": name}.items() if v})
    args = ["-d", conninfo, "--no-owner", "--no-privileges", "-j", jobs]
    for t in tables:
        args += ["-t", t]
    start = time.perf_counter()
    res = private.run_tool("pg_restore", *args, source, env=env, timeout=600, check=False)
    seconds = time.perf_counter() - start
    errors = [ln for ln in res.stderr.splitlines() if "ERROR:" in ln]
    real = [ln for ln in errors if not _HARMLESS.search(ln)]
    if real or (res.returncode != 0 and not errors):
        last = (real or res.stderr.strip().splitlines() or ["no message"])[-1].strip()
        raise WorkbookError(f"pg_restore failed: {last}")
    return name, seconds


def table_rows(conn: psycopg.Connection) -> dict[str, int]:
    """Exact row counts of every table in the public schema."""
    tables = [r[0] for r in conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename").fetchall()]
    return {t: conn.execute(pgsql.SQL("SELECT count(*) FROM {}").format(pgsql.Identifier(t))).fetchone()[0]
            for t in tables}


def restored_summary(db: Any, name: str) -> dict[str, Any]:
    """Rows, tables, indexes and foreign keys of a database :func:`restore` made."""
    from helpers import db as hdb

    with hdb.connect(name, tgt=getattr(db, "target", None) or hdb.target()) as conn:
        rows = table_rows(conn)
        indexes, fks = conn.execute("""SELECT (SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'),
            (SELECT count(*) FROM pg_constraint WHERE contype = 'f')""").fetchone()
    return {"tables": len(rows), "rows": sum(rows.values()), "indexes": indexes, "foreign keys": fks,
            "by table": rows}


def drop_restored(db: Any, name: str) -> None:
    """Drop a database :func:`restore` made."""
    from helpers import db as hdb

    with hdb.connect(tgt=getattr(db, "target", None) or hdb.target()) as admin:
        hdb.drop_own(admin, name)


def toc_kinds(source: Path | str) -> dict[str, int]:
    """What a dump holds, from ``pg_restore -l``: entries counted by kind (TABLE, TABLE DATA, INDEX, ...)."""
    out = private.run_tool("pg_restore", "-l", source).stdout
    kinds: dict[str, int] = {}
    for line in out.splitlines():
        m = re.match(r"^\d+; \d+ \d+ (.+?) (public|-) ", line)
        if m:
            kinds[m.group(1)] = kinds.get(m.group(1), 0) + 1
    return dict(sorted(kinds.items()))


def restore_table_as(db: Any, source: Path | str, table: str, new_name: str) -> int:
    """Load the rows of ``table`` from a dump into a new table ``new_name`` (same columns) of the lesson database,
    without touching ``table`` itself; returns the rows loaded. The usual first step of a single-table repair."""
    conn = as_connection(db)
    script = private.run_tool("pg_restore", "--data-only", "-t", table, "-f", "-", source).stdout
    m = re.search(r"^COPY \S+ \((.*?)\) FROM stdin;\n(.*?)^\\\.$", script, re.M | re.S)
    if m is None:
        raise WorkbookError(f"The dump holds no data for table {table!r}.")
    columns, data = m.group(1), m.group(2)
    conn.execute(pgsql.SQL("DROP TABLE IF EXISTS {}").format(pgsql.Identifier(new_name)))
    conn.execute(pgsql.SQL("CREATE TABLE {} (LIKE {})").format(pgsql.Identifier(new_name), pgsql.Identifier(table)))
    with conn.cursor() as cur:
        with cur.copy(pgsql.SQL("COPY {} ({}) FROM STDIN").format(pgsql.Identifier(new_name),
                                                                  pgsql.SQL(columns))) as copy:
            copy.write(data)
    return conn.execute(pgsql.SQL("SELECT count(*) FROM {}").format(pgsql.Identifier(new_name))).fetchone()[0]


def globals_demo(srv: private.PrivateServer, dbname: str = "store") -> dict[str, list[str]]:
    """A role is a global object: ``pg_dump`` of a database grants to it but never creates it; ``pg_dumpall
    --globals-only`` does. Returns the lines about the role ``store_reader`` in each output."""
    with srv.connect(dbname) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'store_reader'").fetchone():
            conn.execute("CREATE ROLE store_reader LOGIN")
        conn.execute("GRANT SELECT ON invoice TO store_reader")
    one = srv.run("pg_dump", "-d", srv.dsn(dbname), "-t", "invoice", "--schema-only").stdout
    glob = srv.run("pg_dumpall", "-d", srv.conninfo, "--globals-only").stdout
    pick = lambda text: [ln for ln in text.splitlines() if "store_reader" in ln and not ln.startswith("--")]  # noqa
    return {"pg_dump -t invoice": pick(one), "pg_dumpall --globals-only": pick(glob)}


# ---------------------------------------------------------------- physical backups

def counts(srv: private.PrivateServer, dbname: str = "store") -> dict[str, int]:
    """Rows per store table on a private server."""
    with srv.connect(dbname) as conn:
        return {t: conn.execute(pgsql.SQL("SELECT count(*) FROM {}").format(pgsql.Identifier(t))).fetchone()[0]
                for t in STORE_TABLES}


def copy_tables(db: Any, srv: private.PrivateServer, dbname: str, tables: Sequence[str]) -> dict[str, int]:
    """Copy tables (columns, NOT NULL, primary key, rows; no foreign keys, defaults or other indexes) from the lesson
    database into a new database of a private server.

    Built from the catalog and streamed with COPY rather than with pg_dump/pg_restore, so it works from any server
    version (a dump's DDL may carry options a newer server rejects)."""
    conn = as_connection(db)
    with srv.connect() as admin:
        admin.execute(pgsql.SQL("DROP DATABASE IF EXISTS {}").format(pgsql.Identifier(dbname)))
        admin.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(dbname)))
    rows = {}
    with srv.connect(dbname) as dst:
        for table in tables:
            cols = conn.execute("""SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull
                FROM pg_attribute a WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
                ORDER BY a.attnum""", (table,)).fetchall()
            dst.execute(pgsql.SQL("CREATE TABLE {} ({})").format(pgsql.Identifier(table), pgsql.SQL(", ").join(
                pgsql.SQL("{} {}{}").format(pgsql.Identifier(n), pgsql.SQL(t), pgsql.SQL(" NOT NULL" if nn else ""))
                for n, t, nn in cols)))
            with conn.cursor().copy(pgsql.SQL("COPY {} TO STDOUT (FORMAT binary)").format(
                    pgsql.Identifier(table))) as out, dst.cursor().copy(pgsql.SQL(
                    "COPY {} FROM STDIN (FORMAT binary)").format(pgsql.Identifier(table))) as inp:
                for chunk in out:
                    inp.write(chunk)
            for (definition,) in conn.execute("SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                                              "WHERE conrelid = %s::regclass AND contype = 'p'", (table,)):
                dst.execute(pgsql.SQL("ALTER TABLE {} ADD {}").format(pgsql.Identifier(table), pgsql.SQL(definition)))
            dst.execute(pgsql.SQL("ANALYZE {}").format(pgsql.Identifier(table)))
            rows[table] = dst.execute(pgsql.SQL("SELECT count(*) FROM {}").format(
                pgsql.Identifier(table))).fetchone()[0]
    return rows


def store_primary(db: Any, name: str = "primary", **extra: Any) -> tuple[private.PrivateServer, Path]:
    """A private server with WAL archiving on (archive_command copies each segment to its ``archive`` directory)
    and WAL summaries (for incremental backups), holding the store tables in database ``store``.

    Returns the server and its archive directory."""
    srv = private.spawn(name, start=False)
    archive = srv.workdir("archive")
    conf = {"wal_level": "replica", "archive_mode": "on", "summarize_wal": "on", "max_wal_senders": 10,
            "archive_command": f"test ! -f {_q(archive)}/%f && cp %p {_q(archive)}/%f", **extra}
    with open(srv.pgdata / "postgresql.auto.conf", "a") as fh:
        fh.write(private._settings_text(conf))
    srv.start()
    copy_tables(db, srv, "store", STORE_TABLES)
    return srv, archive


def base_backup(srv: private.PrivateServer, name: str, *, incremental_of: Path | None = None,
                extra: Sequence[str] = ()) -> tuple[Path, float]:
    """``pg_basebackup`` (plain format, WAL streamed, fast checkpoint) into a work directory; returns path, seconds."""
    need = sum(r[0] for r in srv.sql("SELECT pg_database_size(datname) FROM pg_database"))
    private.ensure_space(srv.root, need, f"the base backup {name!r}")
    target = srv.workdir(name)
    args = ["-d", srv.conninfo, "-D", target, "-c", "fast", "--no-sync", *extra]
    if incremental_of is not None:
        args += ["--incremental", Path(incremental_of) / "backup_manifest"]
    start = time.perf_counter()
    srv.run("pg_basebackup", *args)
    return target, time.perf_counter() - start


def wait_archived(srv: private.PrivateServer, timeout: float = 30) -> str:
    """Switch to a new WAL segment and wait until the finished one is archived; returns its file name."""
    with srv.connect() as conn:
        conn.execute("SELECT pg_switch_wal()")
        want = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn() - 1)").fetchone()[0]
        deadline = time.monotonic() + timeout
        while True:
            last, failed = conn.execute(
                "SELECT last_archived_wal, failed_count FROM pg_stat_archiver").fetchone()
            if last is not None and last >= want:
                return last
            if time.monotonic() > deadline:
                raise WorkbookError(f"WAL segment {want} was not archived within {timeout:.0f} s "
                                    f"({failed} failed attempts; see the server log).")
            time.sleep(0.05)


@dataclass
class Accident:
    lsn_before: str     # WAL insert position just before the DELETE began
    xid: int            # the DELETE's transaction id
    commit_lsn: str     # WAL position right after its commit
    at: str             # now() of the next statement, just AFTER the commit: not a recovery_target_time (the
                        # COMMIT record's own timestamp, printed by pg_waldump, is the one to stay below)
    rows: int           # rows it deleted


def accident(srv: private.PrivateServer, dbname: str = "store", table: str = "invoice_line") -> Accident:
    """Run ``DELETE FROM <table>`` without a WHERE on a private server, recording where it sits in the WAL."""
    with srv.connect(dbname) as conn:
        before = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0]
        with conn.transaction():
            xid = conn.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()[0]
            rows = conn.execute(pgsql.SQL("DELETE FROM {}").format(pgsql.Identifier(table))).rowcount
        after, at = conn.execute("SELECT pg_current_wal_insert_lsn()::text, now()::text").fetchone()
    return Accident(before, int(xid), after, at, rows)


def recover(archive: Path | str | None, base: Path | str, name: str = "restored", *,
            target: dict[str, Any] | None = None, action: str = "promote",
            wait: bool = True, timeout: float = 120) -> tuple[private.PrivateServer, float]:
    """Start a new private server from a copy of base backup ``base``, replaying WAL from ``archive`` up to
    ``target`` (e.g. ``{"recovery_target_lsn": "0/3000060"}``; None replays everything archived; with no archive
    only the backup itself). Waits until recovery has ended; returns the server and seconds taken (the RTO)."""
    start = time.perf_counter()
    conf: dict[str, Any] = {"archive_mode": "off", "recovery_target_action": action}
    if archive is not None:
        conf["restore_command"] = f"cp {_q(archive)}/%f %p"
    conf.update(target or {})
    if archive is None:  # the backup alone: crash recovery from the WAL inside it (pg_basebackup -X stream)
        conf = {"archive_mode": "off"}
    srv = private.spawn(name, conf, from_dir=base, recovery=archive is not None)
    if wait:
        deadline = time.monotonic() + timeout
        try:
            with srv.connect() as conn:
                while conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                    if action != "promote" and conn.execute(
                            "SELECT pg_get_wal_replay_pause_state()").fetchone()[0] == "paused":
                        break
                    if time.monotonic() > deadline:
                        raise WorkbookError(f"Recovery of {name!r} did not end within {timeout:.0f} s.")
                    time.sleep(0.02)
        except psycopg.OperationalError:
            why = srv.log_tail()
            srv.stop()
            raise WorkbookError(f"Recovery of {name!r} failed and the server shut down ({why}); check the "
                                "recovery target: it must lie between the end of the backup and the end of the "
                                "archived WAL.") from None
    return srv, time.perf_counter() - start


def standby(primary: private.PrivateServer, name: str, delay: str | None = None) -> private.PrivateServer:
    """A streaming standby of ``primary`` (``pg_basebackup -R``); with ``delay`` (e.g. ``'1h'``) a delayed one."""
    copy, _ = base_backup(primary, f"{name}_base", extra=["-R"])
    conf = {"recovery_target_lsn": "", "recovery_target_action": "pause", "restore_command": "",
            "archive_mode": "off", "hot_standby": "on"}
    if delay:
        conf["recovery_min_apply_delay"] = delay
    srv = private.spawn(name, conf, from_dir=copy, standby=True)
    import shutil

    shutil.rmtree(copy, ignore_errors=True)
    return srv


def _wait_lsn(srv: private.PrivateServer, func: str, lsn: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with srv.connect() as conn:
        while not conn.execute(f"SELECT coalesce({func}() >= %s::pg_lsn, false)", (lsn,)).fetchone()[0]:
            if time.monotonic() > deadline:
                raise WorkbookError(f"{srv.name!r} did not reach WAL position {lsn} within {timeout:.0f} s "
                                    f"({func} stayed behind).")
            time.sleep(0.02)


def wait_replayed(srv: private.PrivateServer, lsn: str, timeout: float = 30) -> None:
    """Poll until a standby has replayed the WAL up to ``lsn``."""
    _wait_lsn(srv, "pg_last_wal_replay_lsn", lsn, timeout)


def wait_received(srv: private.PrivateServer, lsn: str, timeout: float = 30) -> None:
    """Poll until a standby has received (and flushed) the WAL up to ``lsn``, applied or not."""
    _wait_lsn(srv, "pg_last_wal_receive_lsn", lsn, timeout)


def copy_rows(src: private.PrivateServer, dst: private.PrivateServer, table: str, dbname: str = "store") -> int:
    """Copy every row of ``table`` from one server to the same table on another (COPY out, COPY in)."""
    ident = pgsql.Identifier(table)
    with src.connect(dbname) as a, dst.connect(dbname) as b:
        with a.cursor().copy(pgsql.SQL("COPY {} TO STDOUT (FORMAT binary)").format(ident)) as out, \
                b.cursor().copy(pgsql.SQL("COPY {} FROM STDIN (FORMAT binary)").format(ident)) as inp:
            for chunk in out:
                inp.write(chunk)
        return a.execute(pgsql.SQL("SELECT count(*) FROM {}").format(ident)).fetchone()[0]


def waldump_counts(archive: Path | str, start_lsn: str, end_lsn: str, xid: int) -> tuple[dict[str, int], list[str]]:
    """``pg_waldump`` of the archived WAL between two LSNs, for one transaction: records counted by
    ``resource manager/record type`` (e.g. ``Heap/DELETE``), and the first few lines as printed."""
    res = private.run_tool("pg_waldump", "-p", archive, "-s", start_lsn, "-e", end_lsn, "-x", xid, check=False)
    kinds: dict[str, int] = {}
    lines = res.stdout.splitlines()
    for line in lines:
        m = re.match(r"rmgr: (\w+)\s+len.*?desc: (\w+)", line)
        if m:
            key = f"{m.group(1)}/{m.group(2)}"
            kinds[key] = kinds.get(key, 0) + 1
    if not kinds:
        raise WorkbookError(f"pg_waldump found no records of transaction {xid}: {res.stderr.strip()[:200]}")
    return dict(sorted(kinds.items())), lines[:4] + lines[-1:]


def wal_summary(archive: Path | str) -> Any:
    """Every transaction in the archived WAL, one row each: its xid, records by kind (heap inserts, updates,
    deletes), and the LSN and time of its commit; a DataFrame, largest first."""
    import pandas as pd

    segs = sorted(p.name for p in Path(archive).iterdir() if re.fullmatch(r"[0-9A-F]{24}", p.name))
    if not segs:
        raise WorkbookError("The archive holds no WAL segments yet.")
    res = private.run_tool("pg_waldump", "-p", archive, segs[0], segs[-1], check=False, timeout=300)
    tx: dict[int, dict[str, Any]] = {}
    pat = re.compile(r"rmgr: (\w+)\s+len.*?tx:\s+(\d+), lsn: ([0-9A-F/]+), prev [0-9A-F/]+, desc: (\w+)(.*)")
    for line in res.stdout.splitlines():
        m = pat.match(line)
        if not m or m.group(2) == "0":
            continue
        rmgr, xid, lsn, kind, rest = m.groups()
        row = tx.setdefault(int(xid), {"xid": int(xid), "inserts": 0, "updates": 0, "deletes": 0,
                                       "commit_lsn": None, "committed_at": None})
        if rmgr.startswith("Heap") and kind in ("INSERT", "MULTI_INSERT"):
            row["inserts"] += 1
        elif rmgr.startswith("Heap") and kind in ("UPDATE", "HOT_UPDATE"):
            row["updates"] += 1
        elif rmgr == "Heap" and kind == "DELETE":
            row["deletes"] += 1
        elif rmgr == "Transaction" and kind == "COMMIT":
            row["commit_lsn"] = lsn
            row["committed_at"] = rest.strip().split(";")[0]
    df = pd.DataFrame(list(tx.values()))
    df = df[df["inserts"] + df["updates"] + df["deletes"] > 0]
    return df.sort_values(["deletes", "xid"], ascending=[False, True]).reset_index(drop=True)


# ---------------------------------------------------------------- exercise 12.restore_lines (a table from a dump)

_EX_DUMPS: dict[str, private.PrivateServer] = {}


def exercise_dump_path(conn: Any) -> Path:
    """Where exercise 12.restore_lines keeps last night's dump: a private work area of this kernel, deleted with it."""
    conn = as_connection(conn)
    ws = _EX_DUMPS.get(conn.info.dbname)
    if ws is None or ws.stopped:
        raise WorkbookError("Run the exercise's setup cell first (ex1.setup(db)): it makes the dump.")
    return ws.root / "ex_invoice_line.dump"


def _new_dump_area(conn: psycopg.Connection) -> Path:
    old = _EX_DUMPS.pop(conn.info.dbname, None)
    if old is not None:
        old.stop()
    ws = private.workspace("exdump12")
    _EX_DUMPS[conn.info.dbname] = ws
    return ws.root / "ex_invoice_line.dump"


def _setup_restore_lines(conn: psycopg.Connection) -> None:
    conn.execute("DROP TABLE IF EXISTS ex_invoice_line, ex_restored, ex_expected")
    conn.execute("CREATE TABLE ex_invoice_line AS SELECT * FROM invoice_line WHERE invoice_id % 10 = 0")
    conn.execute("ALTER TABLE ex_invoice_line ADD PRIMARY KEY (invoice_line_id)")
    dump(conn, _new_dump_area(conn), tables=["ex_invoice_line"])  # last night's dump
    # after the dump: new lines are sold, and one invoice is refunded (its lines deleted on purpose)
    conn.execute("""INSERT INTO ex_invoice_line
        SELECT m.max_id + g, m.first_invoice, m.first_track, 0.99, 1
        FROM generate_series(1, 25) AS g,
             (SELECT max(invoice_line_id) AS max_id, min(invoice_id) AS first_invoice, min(track_id) AS first_track
              FROM ex_invoice_line) AS m""")
    conn.execute("""DELETE FROM ex_invoice_line WHERE invoice_id =
        (SELECT invoice_id FROM ex_invoice_line GROUP BY invoice_id HAVING max(quantity) = 1
         ORDER BY invoice_id DESC LIMIT 1)""")
    conn.execute("""CREATE TABLE ex_expected AS SELECT count(*) AS n_rows,
        md5(string_agg(invoice_line_id::text, ',' ORDER BY invoice_line_id)) AS ids,
        max(invoice_line_id) - 24 AS first_new_id FROM ex_invoice_line""")
    # the accident: a cleanup meant for one invoice ran without its condition on invoice_id
    conn.execute("DELETE FROM ex_invoice_line WHERE quantity > 1")


def _check_restore_lines(conn: psycopg.Connection, answer: Any) -> CheckResult:
    n, ids, first_new = conn.execute("SELECT n_rows, ids, first_new_id FROM ex_expected").fetchone()
    got, got_ids, added = conn.execute("""SELECT count(*),
        md5(string_agg(invoice_line_id::text, ',' ORDER BY invoice_line_id)),
        count(*) FILTER (WHERE invoice_line_id >= %s)
        FROM ex_invoice_line""", (first_new,)).fetchone()
    if got_ids == ids:
        return CheckResult(True, f"ex_invoice_line is back to its {n:,} rows from just before the accident, "
                                 "including the 25 lines sold after the dump.")
    if added < 25:
        return CheckResult(False, f"Only {added} of the 25 lines sold after the dump are there: you replaced the "
                                  "table with the dump's copy. Insert only the rows the accident deleted.")
    if got > n:
        return CheckResult(False, f"{got - n} row(s) too many: you also brought back the lines of the invoice that "
                                  "was refunded on purpose after the dump. Restore only the rows the accident "
                                  "deleted (its condition was quantity > 1).")
    if got < n:
        return CheckResult(False, f"{n - got:,} row(s) are still missing. Hint: restore_table_as(db, dump_path, "
                                  "'ex_invoice_line', 'ex_restored') loads the dump's rows into a side table; "
                                  "then INSERT the ones the accident deleted.")
    return CheckResult(False, "The row count is right but not the same rows as before the accident.")


register(Exercise(
    id="12.restore_lines",
    title="Repair one table from last night's dump",
    prompt=(
        "ex_invoice_line was dumped last night (custom format, the file at exercise_dump_path(db.conn)). Since then\n"
        "25 lines were sold, one invoice was refunded (its lines deleted on purpose), and then a cleanup ran\n"
        "DELETE FROM ex_invoice_line WHERE quantity > 1 by mistake. Bring ex_invoice_line back to the state just\n"
        "before the accident, without losing today's work."
    ),
    setup_fn=_setup_restore_lines,
    checker=_check_restore_lines,
    lesson="12_backup_restore",
    starting_answer=None,
    quiet_until_changed=True,  # no hint before the learner has changed anything
))


# ---------------------------------------------------------------- exercise 12.pitr (point-in-time recovery)

@dataclass
class Scenario:
    """What exercise 12.pitr hands the learner: a base backup, an archive, and a server that had an accident."""

    primary: private.PrivateServer
    archive: Path
    base: Path


_SCENARIOS: private.PerDatabase[Scenario] = private.PerDatabase(lambda sc: not sc.primary.stopped,
                                                                lambda sc: sc.primary.stop())


def exercise_scenario(db: Any) -> Scenario:
    """The private servers of exercise 12.pitr for this lesson database (made by its setup)."""
    return _SCENARIOS.require(as_connection(db))


def _setup_pitr(conn: psycopg.Connection) -> None:
    _SCENARIOS.replace(conn, lambda: _pitr_scenario(conn))


def _pitr_scenario(conn: psycopg.Connection) -> Scenario:
    for srv in private.running():
        if srv.name.startswith("ex12"):
            srv.stop()
    conn.execute("DROP TABLE IF EXISTS ex_pitr_expected")
    primary, archive = store_primary(conn, "ex12_primary")
    base, _ = base_backup(primary, "base")
    with primary.connect("store") as c:  # the day's work after the backup
        c.execute("""INSERT INTO invoice (invoice_id, customer_id, invoice_date, total)
                     SELECT max_id + g, 1 + g % 50, now(), 9.99
                     FROM generate_series(1, 40) AS g, (SELECT max(invoice_id) AS max_id FROM invoice) AS m""")
    expected = counts(primary)
    accident(primary, table="invoice_line")
    with primary.connect("store") as c:  # work after the accident (lost by any recovery to before it)
        c.execute("UPDATE customer SET company = 'after the accident' WHERE customer_id = 1")
    wait_archived(primary)
    conn.execute("CREATE TABLE ex_pitr_expected (table_name text PRIMARY KEY, n_rows bigint NOT NULL)")
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO ex_pitr_expected VALUES (%s, %s)", list(expected.items()))
    primary.pg_stop()  # the damaged server is shut down; the base backup and the archive are what's left
    return Scenario(primary, archive, base)


def _check_pitr(conn: psycopg.Connection, answer: Any) -> CheckResult:
    expected = dict(conn.execute("SELECT table_name, n_rows FROM ex_pitr_expected").fetchall())
    if answer.stopped or answer.postmaster_pid() is None:
        return CheckResult(False, "That server is not running; pass the server recover() returned.")
    if answer.scalar("SELECT pg_is_in_recovery()"):
        return CheckResult(False, "The server is still in recovery (paused at the target?): use "
                                  "recovery_target_action 'promote' so it ends recovery and accepts writes.")
    got = counts(answer)
    if got == expected:
        return CheckResult(True, f"All {expected['invoice_line']:,} invoice lines are back, and so are the 40 "
                                 "invoices written after the base backup.")
    if got["invoice_line"] == 0:
        return CheckResult(False, "invoice_line is empty: recovery replayed the accident. Stop before the "
                                  "DELETE's commit (recovery_target_xid with recovery_target_inclusive off, or an "
                                  "LSN before it).")
    if got["invoice"] < expected["invoice"]:
        return CheckResult(False, f"{expected['invoice'] - got['invoice']} invoices written after the base backup "
                                  "are missing: replay the archived WAL (restore_command) up to just before the "
                                  "accident, not only the backup.")
    return CheckResult(False, f"Counts differ from the state before the accident: got {got}, expected {expected}.")


register(Exercise(
    id="12.pitr",
    title="Point-in-time recovery to just before the accident",
    prompt=(
        "sc = exercise_scenario(db) gives a base backup (sc.base) and a WAL archive (sc.archive) of a server on which\n"
        "someone ran DELETE FROM invoice_line without a WHERE, and kept working afterwards. You are not told when.\n"
        "Find the accident in the WAL (pg_waldump on the archive), then recover a new server to just before it with\n"
        "recover(...). Pass the recovered server to the check."
    ),
    setup_fn=_setup_pitr,
    checker=_check_pitr,
    answer_kind=private.PrivateServer,
    answer_hint="the PrivateServer that recover(...) returned",
    lesson="12_backup_restore",
))
