"""Connections, the workbook's own databases, and the one call at the top of every notebook (00_start_here).

Which server: ``DATABASE_URL`` when it is set (docker-compose, a managed server, a workshop server), otherwise the
embedded PostgreSQL 18 (:mod:`helpers.core.server`).

Which databases: the workbook drops or rewrites only databases whose names start with ``pdw_<role>_``, that carry
its marker comment (``COMMENT ON DATABASE ... IS 'pdw:...'``) *and* that the connected role owns. Anything else it
refuses to touch.

* ``pdw_<role>_tpl_<scale>``: the loaded data set, the template lesson databases are copied from;
* ``pdw_<role>_<lesson>``: one per notebook, re-created by each run of its first cell;
* ``pdw_<role>_<namespace>_...``: a test run's lessons and scratch databases (``PDW_NAMESPACE``), dropped afterwards.

``<role>`` is the connecting role (with a hash when its name had to be shortened or changed), so learners sharing
one workshop server never collide.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator
from urllib.parse import quote

import psycopg
from psycopg import sql as pgsql

from helpers.core import server, settings
from helpers.core.errors import WorkbookError, show_without_traceback

MIN_SERVER_VERSION = 150000
MARKER = "pdw:"
APP_NAME = "postgres-design-workbook"


# ---------------------------------------------------------------- which server

@dataclass(frozen=True)
class Target:
    """Where to connect: connection keywords for psycopg, plus a human description."""

    kwargs: dict
    kind: str  # "embedded" or "DATABASE_URL"

    @property
    def where(self) -> str:
        if self.kind == "embedded":
            return f"embedded, socket in {settings.show_path(self.kwargs.get('host'))}"
        host = self.kwargs.get("host") or "local socket"
        return f"DATABASE_URL, {host}:{self.kwargs.get('port') or 5432}"

    def with_db(self, dbname: str) -> "Target":
        return Target({**self.kwargs, "dbname": dbname}, self.kind)

    def sqlalchemy_url(self, dbname: str | None = None) -> str:
        kw = self.kwargs
        user = quote(kw.get("user") or "", safe="")
        pw = kw.get("password")
        auth = f"{user}:{quote(pw, safe='')}@" if pw else (f"{user}@" if user else "")
        host = kw.get("host") or ""
        query = {k: v for k, v in kw.items() if k not in ("user", "password", "host", "port", "dbname", "options")}
        netloc = ""
        if host and not host.startswith("/"):
            netloc = (f"[{host}]" if ":" in host else host) + (f":{kw['port']}" if kw.get("port") else "")
        elif host:
            query["host"] = host
            if str(kw.get("port") or "5432") != "5432":  # a socket's port names its file, .s.PGSQL.<port>
                query["port"] = kw["port"]
        qs = "&".join(f"{k}={quote(str(v), safe='/')}" for k, v in query.items())
        return f"postgresql+psycopg://{auth}{netloc}/{dbname or kw.get('dbname') or 'postgres'}" + (f"?{qs}" if qs else "")


def _mask(url: str) -> str:
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def parse_database_url(url: str) -> dict:
    """Turn a ``postgresql://`` URL into psycopg keywords; a malformed one gives one clear sentence."""
    url = url.strip()
    m = re.match(r"^(postgres|postgresql)(\+psycopg2?)?://", url)
    if not m:
        raise WorkbookError(
            f"DATABASE_URL {_mask(url)!r} is not a PostgreSQL URL; it should look like "
            "postgresql://user:password@host:5432/dbname (or unset it to use the embedded server).")
    try:
        kwargs = psycopg.conninfo.conninfo_to_dict("postgresql://" + url[m.end():])
    except psycopg.ProgrammingError as exc:
        raise WorkbookError(
            f"DATABASE_URL {_mask(url)!r} could not be parsed ({str(exc).splitlines()[0]}); it should look like "
            "postgresql://user:password@host:5432/dbname.") from None
    port = kwargs.get("port")
    if port is not None and not str(port).isdigit():
        raise WorkbookError(f"DATABASE_URL {_mask(url)!r} has port {port!r}, which is not a number.")
    return kwargs


def target() -> Target:
    """The server the workbook uses now (starting the embedded one if needed, held until this process exits)."""
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        kwargs = parse_database_url(url)
        kwargs.setdefault("dbname", "postgres")
        return Target(kwargs, "DATABASE_URL")
    server.ensure_running(hold=True)
    return Target({"host": str(server.socket_dir()), "port": str(server.port()), "user": "postgres",
                   "dbname": "postgres"}, "embedded")


# ---------------------------------------------------------------- connecting, with clear errors

def session_options(timeout: str | None = None) -> str:
    """Session defaults for every workbook connection (passed as libpq ``options``)."""
    timeout = timeout or settings.statement_timeout()
    # jit off: JIT compilation adds tens of ms to some plans on some builds, which would blur before/after timings.
    return f"-c statement_timeout={timeout} -c timezone=UTC -c jit=off -c lock_timeout=30s"


def _explain_connect_error(exc: Exception, tgt: Target) -> WorkbookError:
    msg = str(exc).strip()
    host = tgt.kwargs.get("host") or "the local socket"
    port = tgt.kwargs.get("port") or 5432
    user = tgt.kwargs.get("user") or os.environ.get("USER", "?")
    db = tgt.kwargs.get("dbname")
    low = msg.lower()
    if "password authentication failed" in low or "no password supplied" in low or "authentication failed" in low:
        text = (f"PostgreSQL at {host}:{port} rejected the login for role {user!r}: check the user name and password "
                "in DATABASE_URL.")
    elif re.search(r'role ".*" does not exist', low):
        text = f"PostgreSQL at {host}:{port} has no role {user!r}: fix the user name in DATABASE_URL."
    elif re.search(r'database ".*" does not exist', low):
        text = (f"PostgreSQL at {host}:{port} has no database {db!r}: create it (createdb {db}) or point DATABASE_URL "
                "at an existing one such as /postgres.")
    elif "timeout" in low or "refused" in low or "could not connect" in low or "no such file" in low \
            or "could not translate host name" in low or "name or service not known" in low:
        hint = ("Is that server running and reachable? Check host and port in DATABASE_URL, or unset DATABASE_URL to "
                "use the embedded server.") if tgt.kind == "DATABASE_URL" else \
            "Restart it with `.venv/bin/python -m helpers server start`."
        text = f"Cannot reach PostgreSQL at {host}:{port}. {hint}"
    else:
        text = f"Could not connect to PostgreSQL at {host}:{port}: {msg.splitlines()[-1]}"
    return WorkbookError(text)


def connect(dbname: str | None = None, *, timeout: str | None = None, tgt: Target | None = None,
            app: str = APP_NAME) -> psycopg.Connection:
    """An autocommit psycopg connection with the workbook's session defaults."""
    tgt = tgt or target()
    kwargs = {**tgt.kwargs, "dbname": dbname or tgt.kwargs.get("dbname")}
    kwargs.setdefault("connect_timeout", 5)
    # Options from DATABASE_URL (some managed servers need them) come first; the workbook's defaults follow.
    kwargs["options"] = " ".join(filter(None, [kwargs.get("options"), session_options(timeout)]))
    kwargs.setdefault("application_name", app)
    try:
        conn = psycopg.connect(**kwargs, autocommit=True)
    except psycopg.OperationalError as exc:
        raise _explain_connect_error(exc, tgt.with_db(kwargs["dbname"])) from None
    return conn


def check_server(conn: psycopg.Connection) -> None:
    """Refuse servers older than 15 and roles that may not create databases, in one sentence each."""
    if conn.info.server_version < MIN_SERVER_VERSION:
        raise WorkbookError(
            f"This server runs PostgreSQL {conn.info.server_version // 10000}; the workbook needs 15 or newer "
            "(unset DATABASE_URL to use the embedded PostgreSQL 18).")
    row = conn.execute("SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    if not row or not row[0]:
        raise WorkbookError(
            f"Role {conn.info.user!r} may not create databases, which every lesson needs; ask the server's admin for "
            f"ALTER ROLE {conn.info.user} CREATEDB, or use another role.")


def server_version(conn: psycopg.Connection) -> str:
    v = conn.info.server_version
    return f"{v // 10000}.{v % 100}"


# ---------------------------------------------------------------- the workbook's own databases

def role_slug(role: str) -> str:
    """The role as it appears in database names; a short hash keeps names apart when the slug lost anything
    (``Alice`` vs ``alice``, ``a.b`` vs ``a_b``, long names that share their first 20 characters)."""
    slug = re.sub(r"[^a-z0-9]+", "_", role.lower()).strip("_") or "user"
    if slug == role and len(slug) <= 20:
        return slug
    import hashlib

    return f"{slug[:14]}_{hashlib.sha1(role.encode()).hexdigest()[:5]}"


def db_name(role: str, suffix: str, *, namespaced: bool = True) -> str:
    """``pdw_<role>_<suffix>``, at most 63 bytes (PostgreSQL's identifier limit).

    Under ``PDW_NAMESPACE`` (each test run sets ``test<letters>``) it is ``pdw_<role>_<namespace>_<suffix>``, so a test run
    never drops the lesson database a learner has open in JupyterLab. Templates are shared (``namespaced=False``).
    """
    suffix = re.sub(r"[^a-z0-9_]+", "_", suffix.lower()).strip("_")
    ns = re.sub(r"[^a-z0-9_]+", "_", settings.namespace().lower()).strip("_") if namespaced else ""
    return f"pdw_{role_slug(role)}_{ns + '_' if ns else ''}{suffix}"[:63]


def marker_of(conn: psycopg.Connection, dbname: str) -> dict | None:
    """The workbook's marker on a database as a dict; None if it carries none; LookupError if it does not exist."""
    row = conn.execute(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
    if row is None:
        raise LookupError(dbname)
    comment = row[0] or ""
    if not comment.startswith(MARKER):
        return None
    try:
        return json.loads(comment[len(MARKER):])
    except ValueError:
        return None


def exists(conn: psycopg.Connection, dbname: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone() is not None


def set_marker(conn: psycopg.Connection, dbname: str, **info: Any) -> None:
    """Mark a database as the workbook's: a JSON comment (kind, lesson, scale, ...)."""
    conn.execute(pgsql.SQL("COMMENT ON DATABASE {} IS {}").format(
        pgsql.Identifier(dbname), pgsql.Literal(MARKER + json.dumps(info, sort_keys=True))))


def owner_of(conn: psycopg.Connection, dbname: str) -> str | None:
    row = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
    return row[0] if row else None


def drop_own(conn: psycopg.Connection, dbname: str, *, force: bool = True) -> bool:
    """Drop a database only if the workbook created it (marker present) and the connected role owns it.

    Refuses anything else with one sentence; returns False if the database does not exist. ``force=False`` leaves
    a database that sessions are connected to (the drop fails) instead of ending them.
    """
    try:
        mark = marker_of(conn, dbname)
    except LookupError:
        return False
    owner = owner_of(conn, dbname)
    if owner != conn.info.user:
        raise WorkbookError(
            f"Database {dbname!r} belongs to role {owner!r}, not to {conn.info.user!r}, so it is left untouched.")
    if mark is None or not dbname.startswith("pdw_"):
        raise WorkbookError(
            f"Database {dbname!r} exists but was not created by the workbook (or its creation was interrupted), so "
            f"it is left untouched; if it is yours to discard, drop it yourself (DROP DATABASE \"{dbname}\").")
    try:
        drop_database(conn, dbname, force=force)
    except psycopg.Error as exc:
        raise WorkbookError(f"Could not drop {dbname!r}: {explain_sql_error(exc)}.") from None
    return True


def drop_database(conn: psycopg.Connection, dbname: str, *, force: bool = True) -> None:
    """DROP DATABASE, ending the sessions in it first if ``force``, also when the connected role is not a superuser.

    The caller has checked that the database is its own to drop. ``WITH (FORCE)`` refuses a role that is not a
    superuser when an autovacuum worker is in the database: the worker has no role, so the check that the caller may
    end each process fails for it (``TerminateOtherDBBackends`` in ``procarray.c``). A plain DROP DATABASE ends
    autovacuum workers itself and waits up to 5 seconds for other sessions to leave (``CountOtherDBBackends``), so
    then the sessions the role may end are ended first and the drop is made without FORCE.
    """
    ident = pgsql.Identifier(dbname)
    if not force:
        conn.execute(pgsql.SQL("DROP DATABASE {}").format(ident))
        return
    try:
        conn.execute(pgsql.SQL("DROP DATABASE {} WITH (FORCE)").format(ident))
        return
    except psycopg.errors.InsufficientPrivilege:
        pass
    conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                 "AND pid <> pg_backend_pid() AND usesysid IS NOT NULL AND pg_has_role(usesysid, 'USAGE')",
                 (dbname,))
    conn.execute(pgsql.SQL("DROP DATABASE {}").format(ident))


def create_own(conn: psycopg.Connection, dbname: str, *, template: str | None = None, **info: Any) -> None:
    """Create a database and mark it as the workbook's (C collation, so sort order is the same on every server)."""
    if template:
        stmt = pgsql.SQL("CREATE DATABASE {} TEMPLATE {}").format(pgsql.Identifier(dbname),
                                                                   pgsql.Identifier(template))
    else:
        stmt = pgsql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C.UTF-8'"
                         ).format(pgsql.Identifier(dbname))
    for attempt in range(20):
        try:
            conn.execute(stmt)
            break
        except psycopg.errors.ObjectInUse:
            # Another session is connected to the template (CREATE DATABASE needs it idle); wait and retry.
            if attempt == 19:
                raise WorkbookError(f"Template {template!r} stayed busy; close other sessions using it and retry.") \
                    from None
            time.sleep(0.25)
        except psycopg.errors.InvalidParameterValue:
            if template:
                raise
            # No C.UTF-8 locale on that server's OS: plain C keeps the same sort order.
            stmt = pgsql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
                             ).format(pgsql.Identifier(dbname))
    set_marker(conn, dbname, **info)
    # Owner only: on a shared (workshop) server no other learner may connect to it (superusers still can).
    conn.execute(pgsql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC").format(pgsql.Identifier(dbname)))


@contextlib.contextmanager
def advisory_lock(conn: psycopg.Connection, name: str, *, quiet_s: float = 3.0) -> Iterator[None]:
    """A server-wide lock so two processes never build the same template at once (waits as long as it takes).

    Every lesson takes it for a moment to check its template, so two lessons opened at once (two test workers, two
    notebooks) meet here: the first ``quiet_s`` seconds of waiting are silent, and only a longer wait, another
    process loading the data, is said.
    """
    def got() -> bool:
        return conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (name,)).fetchone()[0]

    deadline = time.monotonic() + quiet_s
    while not got():
        if time.monotonic() >= deadline:
            print(f"Waiting for another process that is loading {name} ...", file=sys.stderr, flush=True)
            conn.execute("SET lock_timeout = 0")
            conn.execute("SET statement_timeout = 0")
            conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (name,))
            break
        time.sleep(0.05)
    try:
        yield
    finally:
        conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (name,))


FAILED_TRANSACTION_NOTE = ("Rolled back a transaction that had failed earlier (after an error inside BEGIN ... COMMIT "
                           "PostgreSQL ignores every command until ROLLBACK); nothing from that BEGIN on was kept.")


def recover(conn: psycopg.Connection, *, say: bool = True) -> bool:
    """Roll back a failed ("aborted") transaction left open on ``conn`` and say so in one line.

    After an error between ``BEGIN`` and ``COMMIT`` (sent by the learner as one string), PostgreSQL refuses every
    command with "current transaction is aborted" until ``ROLLBACK``. Every entry point of the toolkit (``db.sql``,
    ``run``, ``try_sql``, ``scalar``, exercise setups and checks, the widgets) calls this first, so one failed
    transaction never sticks. A transaction that is open and healthy (``BEGIN`` on purpose) is left alone.
    Returns True when it rolled something back.
    """
    if conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.INERROR:
        return False
    try:
        conn.rollback()
    except psycopg.Error:
        return False
    if say:
        print(FAILED_TRANSACTION_NOTE)
    return True


def as_connection(conn_or_lesson: Any) -> psycopg.Connection:
    """The psycopg connection behind a ``Lesson`` (anything with ``.conn``) or a connection itself."""
    conn = getattr(conn_or_lesson, "conn", conn_or_lesson)
    if not isinstance(conn, psycopg.Connection):
        raise TypeError(
            f"Expected a psycopg connection or a Lesson, got {type(conn_or_lesson).__name__}: "
            "pass db (from helpers.lesson(...)) or db.conn."
        )
    return conn


# ---------------------------------------------------------------- templates (the loaded data)

def data_version() -> str:
    """Changes whenever the shipped data or the generator changes, so stale templates are rebuilt."""
    import hashlib

    digest = hashlib.sha256()
    data = settings.PROJECT_ROOT / "helpers" / "data"
    for path in (settings.PROJECT_ROOT / "datasets" / "manifest.json", data / "chinook.py", data / "generate.py",
                 data / "datasets.py", data / "schema.sql"):
        if path.exists():
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def template_name(conn: psycopg.Connection, scale: str) -> str:
    # A workshop learner (PDW_WORKSHOP set) copies the template its instructor provisioned once for everyone.
    shared = db_name(os.environ.get("PDW_WORKSHOP", ""), f"tpl_{scale}", namespaced=False)
    if os.environ.get("PDW_WORKSHOP") and exists(conn, shared):
        return shared
    return db_name(conn.info.user, f"tpl_{scale}", namespaced=False)


def ensure_template(scale: str | None = None, *, force: bool = False, progress: bool = True,
                    loader: Callable[[psycopg.Connection, str, bool], dict] | None = None,
                    name: str | None = None) -> str:
    """Build the template database for ``scale`` if it is missing, half-built or stale; return its name.

    ``loader`` and ``name`` replace the data loader and the template's name (tests and benchmarks).
    """
    scale = settings.current_scale(scale)
    tgt = target()
    with connect(tgt=tgt) as admin:
        check_server(admin)
        name = name or template_name(admin, scale)
        version = data_version()
        with advisory_lock(admin, name):
            mark = None
            if exists(admin, name):
                mark = marker_of(admin, name)
                if mark is None:
                    raise WorkbookError(f"Database {name!r} exists but was not created by the workbook; "
                                        "it is left untouched (rename it, or use another role).")
            if mark and mark.get("state") == "ready" and mark.get("version") == version and not force:
                return name
            if mark:  # half-built (a killed load), stale data, or forced: rebuild from scratch
                drop_own(admin, name)
            create_own(admin, name, kind="template", scale=scale, state="building", version=version)
            try:
                if loader is None:
                    from helpers.data.datasets import load_into as loader
                with connect(name, tgt=tgt, timeout="0") as conn:
                    counts = loader(conn, scale, progress)
            except BaseException:
                with contextlib.suppress(Exception):
                    drop_own(admin, name)
                raise
            set_marker(admin, name, kind="template", scale=scale, state="ready", version=version,
                       rows=int(sum(counts.values())))
    return name


def template_rows(admin: psycopg.Connection, name: str) -> int | None:
    mark = marker_of(admin, name) or {}
    return mark.get("rows")


# ---------------------------------------------------------------- the lesson

@dataclass
class Lesson:
    """What a notebook works with: its own database, an engine, a connection and a way to run SQL."""

    name: str
    dbname: str
    scale: str
    target: Target
    version: str
    conn: psycopg.Connection = field(repr=False)
    timeout: str = field(default_factory=settings.statement_timeout)
    _engine: Any = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the lesson database (password included when DATABASE_URL has one)."""
        return self.target.sqlalchemy_url(self.dbname)

    @property
    def engine(self):
        """A SQLAlchemy 2 engine on the lesson database, with the same session defaults."""
        if self._engine is None:
            from sqlalchemy import create_engine

            options = " ".join(filter(None, [self.target.kwargs.get("options"), session_options(self.timeout)]))
            self._engine = create_engine(
                self.url, connect_args={"options": options, "application_name": f"pdw:{self.name}"})
        return self._engine

    def sql(self, query: str, params: dict | None = None):
        """Run a query and return a pandas DataFrame (parameters as ``%(name)s`` with a dict)."""
        import pandas as pd

        with _explained(self):
            cur = self.conn.execute(query, params or None)
            if cur.description is None:
                return pd.DataFrame()
            cols = [d.name for d in cur.description]
            return pd.DataFrame(cur.fetchall(), columns=cols)

    def run(self, statement: str, params: dict | None = None) -> int:
        """Execute a statement (autocommit); returns the number of rows it affected."""
        with _explained(self):
            cur = self.conn.execute(statement, params or None)
            return cur.rowcount

    def scalar(self, query: str, params: dict | None = None):
        """The single value a query returns."""
        with _explained(self):
            row = self.conn.execute(query, params or None).fetchone()
            return None if row is None else row[0]

    def try_sql(self, statement: str, params: dict | None = None) -> None:
        """Run a statement that may fail on purpose; print ``OK`` or the error in one line instead of raising."""
        try:
            rows = self.run(statement, params)
        except WorkbookError as exc:
            print(f"ERROR: {exc}")
        else:
            print(f"OK ({rows} row{'s' if rows != 1 else ''})" if rows >= 0 else "OK")

    def set_timeout(self, value: str) -> None:
        """Change statement_timeout for this lesson's connection, e.g. ``'5min'`` or ``'0'`` (no limit)."""
        with _explained(self):
            self.conn.execute(pgsql.SQL("SET statement_timeout = {}").format(pgsql.Literal(value)))
        self.timeout = value

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()
        if self._engine is not None:
            self._engine.dispose()


def explain_sql_error(exc: psycopg.Error, timeout: str | None = None) -> str:
    """One sentence for an error raised by learner SQL."""
    if isinstance(exc, psycopg.errors.QueryCanceled):
        if "statement timeout" in str(exc):
            return (f"The query ran longer than statement_timeout ({timeout or settings.statement_timeout()}) and was "
                    "stopped; make it cheaper (an index, a LIMIT) or raise the limit with db.set_timeout('5min').")
        return "The query was cancelled (interrupted) and the server stopped it; the connection is still usable."
    diag = exc.diag
    text = (diag.message_primary or str(exc).splitlines()[0]).strip()
    if diag.message_detail:
        text += f" ({diag.message_detail.strip()})"
    if "are allowed as placeholders" in text:  # psycopg, before anything is sent: a bare % next to parameters
        text += " (with parameters, write every literal % in the query as %%, e.g. LIKE 'Rock%%')"
    if isinstance(exc, psycopg.errors.InFailedSqlTransaction):
        text += "; run db.run('ROLLBACK') (or re-run the cell: the workbook's helpers roll it back for you)"
    return text


@contextlib.contextmanager
def _explained(lesson: Lesson) -> Iterator[None]:
    recover(lesson.conn)
    try:
        yield
    except KeyboardInterrupt:
        raise
    except psycopg.OperationalError as exc:
        if lesson.conn.closed:
            raise WorkbookError("The connection to the server was lost; re-run the lesson's first cell.") from None
        raise WorkbookError(explain_sql_error(exc, lesson.timeout) + _rolled_back(lesson.conn)) from None
    except psycopg.Error as exc:
        raise WorkbookError(explain_sql_error(exc, lesson.timeout) + _rolled_back(lesson.conn)) from None


def _rolled_back(conn: psycopg.Connection) -> str:
    """When the error happened inside the learner's own BEGIN ... COMMIT, roll that transaction back now and say so."""
    if recover(conn, say=False):
        return (". It happened inside a transaction (BEGIN ...), which is now rolled back: nothing from that BEGIN on "
                "was kept; the next cell works as usual")
    return ""


def lesson(name: str, scale: str | None = None, *, quiet: bool = False, min_scale: str | None = None) -> Lesson:
    """Give a notebook its own, freshly copied database. Re-running it starts the lesson over.

    Prints which server, version and data scale the notebook runs on. ``min_scale`` is for lessons whose
    measurements need tables of a certain size: below it, the lesson says so in one sentence and uses that scale
    (loading it once if needed).
    """
    show_without_traceback()
    scale = settings.current_scale(scale)
    if min_scale is not None and settings.SCALES.index(scale) < settings.SCALES.index(min_scale):
        if not quiet:
            print(f"This lesson measures effects that need at least the {min_scale!r} data set (at {scale!r} its "
                  f"tables are too small to show them), so it uses {min_scale!r}.")
        scale = min_scale
    tgt = target()
    template = ensure_template(scale, progress=not quiet)
    with connect(tgt=tgt) as admin:
        dbname = db_name(admin.info.user, name)
        drop_own(admin, dbname)
        try:
            create_own(admin, dbname, template=template, kind="lesson", lesson=name, scale=scale,
                       namespace=settings.namespace())
        except psycopg.Error as exc:
            raise WorkbookError(f"Could not create the lesson database {dbname!r}: {explain_sql_error(exc)}.") \
                from None
        rows = template_rows(admin, template)
        version = server_version(admin)
    conn = connect(dbname, tgt=tgt, app=f"pdw:{name}")
    les = Lesson(name=name, dbname=dbname, scale=scale, target=tgt, version=version, conn=conn)
    if not quiet:
        print(f"Lesson {name}: database {dbname}, a fresh copy of the {scale!r} data set"
              + (f" ({rows:,} rows)" if rows else "") + ".")
        print(f"Server: PostgreSQL {version} ({tgt.where}); statement_timeout {settings.statement_timeout()}.")
    return les


@contextlib.contextmanager
def temporary_lesson(name: str, scale: str = "tiny") -> Iterator[Lesson]:
    """A quiet lesson database that is dropped afterwards (tests of the lessons' helpers and exercises)."""
    les = lesson(name, scale, quiet=True)
    try:
        yield les
    finally:
        les.close()
        with connect() as admin:
            drop_own(admin, les.dbname)


@contextlib.contextmanager
def scratch_database(prefix: str = "t") -> Iterator[psycopg.Connection]:
    """A fresh empty database of the workbook's own, dropped afterwards (tests and benchmarks)."""
    tgt = target()
    with connect(tgt=tgt) as admin:
        check_server(admin)
        name = db_name(admin.info.user, f"{prefix}_{secrets.token_hex(4)}")
        create_own(admin, name, kind="scratch", namespace=settings.namespace())
        try:
            with connect(name, tgt=tgt) as conn:
                yield conn
        finally:
            drop_own(admin, name)


def own_databases() -> list[tuple[str, dict]]:
    """The databases this role's workbook created on the current server, with their markers."""
    with connect() as admin:
        prefix = db_name(admin.info.user, "", namespaced=False)
        rows = admin.execute("SELECT datname FROM pg_database WHERE datname LIKE %s"
                             " AND datdba = (SELECT oid FROM pg_roles WHERE rolname = current_user) ORDER BY datname",
                             (prefix.replace("_", r"\_") + "%",)).fetchall()
        out = []
        for (name,) in rows:
            mark = marker_of(admin, name)
            if mark is not None:
                out.append((name, mark))
        return out
